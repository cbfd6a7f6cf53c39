"""The container executor's shape, without an engine: what `docker create` gets, how the host
executor reads the mounted runner's launch, and how `labbatch local` chooses. The same paths
against a real engine: tests/e2e/test_local_containers.py."""

from __future__ import annotations

import argparse
import os
import sys

from labbatch_contract.batch_container import container_for
from labbatch.lab.batch_layout import JOB_MOUNTS, RUNNER_LAUNCH, RUNNER_MOUNT
from labbatch.local.batch.registration import mounts_properties as _mounts
from labbatch.local import command as local_command
from labbatch.lab.batch_layout import on_host as host_command
from labbatch.local.docker_runner import DEMO_TAG, ContainerRunner, container_name, image_missing_reason

from test_batch_helpers import ON_DEMAND_QUEUE, local_batch, wait_for


def _definition(image: str, command: list[str], vcpus: int, memory_mib: int, **extra) -> dict:
    return {"containerProperties": {
        "image": image, "command": command,
        "environment": [{"name": "LABBATCH_SCRATCH_DIR", "value": "/scratch"}],
        "resourceRequirements": [{"type": "VCPU", "value": str(vcpus)}, {"type": "MEMORY", "value": str(memory_mib)}],
        **_mounts(JOB_MOUNTS), **extra}}


def test_create_argv_is_the_agents_container_with_the_instances_paths_mapped_to_this_machine(tmp_path):
    container = container_for(
        _definition("demo", [*RUNNER_LAUNCH, "fastq-stats", "{input}"], 2, 4096),
        overrides={"environment": [{"name": "LABBATCH_JOB_ID", "value": "j-1"}]},
    ).with_environment({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_BATCH_JOB_ATTEMPT": "1"})
    runner = ContainerRunner("docker", tmp_path / "tree")
    spec = runner.spec(container, scratch=tmp_path / "attempt", name="labbatch-j-1-a1",
                       labels={"labbatch.attempt": "1"}, reference_cache=tmp_path / "cache")
    assert spec.image == DEMO_TAG and spec.name == "labbatch-j-1-a1" and spec.scratch == tmp_path / "attempt"
    assert spec.refusal is None
    assert spec.create_argv == [
        "docker", "create", "--pull", "never", "--name", "labbatch-j-1-a1", "--network", "host",
        "--cpu-shares", "2048", "--memory", "4096m", "--memory-swap", "4096m",
        "--volume", f"{tmp_path / 'attempt'}:/scratch", "--volume", f"{tmp_path / 'tree'}:{RUNNER_MOUNT}:ro",
        "--volume", f"{tmp_path / 'cache'}:/scratch/labbatch-cache",
        "--env", "AWS_BATCH_JOB_ATTEMPT=1", "--env", "AWS_ENDPOINT_URL=http://127.0.0.1:9",
        "--env", "LABBATCH_JOB_ID=j-1", "--env", "LABBATCH_SCRATCH_DIR=/scratch",
        "--label", "labbatch.attempt=1", "--label", f"labbatch.local-pid={os.getpid()}",
        DEMO_TAG, *RUNNER_LAUNCH, "fastq-stats", "{input}"]
    assert "--entrypoint" not in spec.create_argv  # the image's own ENTRYPOINT, as Batch leaves it


def test_a_definition_mounting_another_instance_path_is_refused_not_given_this_machines(tmp_path):
    definition = _definition("demo", ["true"], 1, 512)
    definition["containerProperties"]["volumes"].append({"name": "home", "host": {"sourcePath": "/home/ec2-user"}})
    definition["containerProperties"]["mountPoints"].append({"sourceVolume": "home", "containerPath": "/home/ec2-user"})
    spec = ContainerRunner("docker", tmp_path).spec(container_for(definition), scratch=tmp_path / "a", name="n")
    assert spec.refusal == ("CannotCreateContainerError: the job definition mounts /home/ec2-user of the instance; "
                            f"LabBatch's local instance has only {RUNNER_MOUNT} and /scratch")


def test_registry_images_run_as_named_and_podman_is_the_same_commands(tmp_path):
    spec = ContainerRunner("podman", tmp_path).spec(
        container_for(_definition("quay.io/biocontainers/bwa:0.7.18", ["bwa"], 1, 512)), scratch=tmp_path, name="n")
    assert spec.create_argv[:2] == ["podman", "create"] and spec.create_argv[-2:] == [
        "quay.io/biocontainers/bwa:0.7.18", "bwa"]


def test_host_executor_runs_the_host_runner_in_place_of_the_mounted_one():
    assert host_command([*RUNNER_LAUNCH, "fastq-stats", "{input}"]) == ["labbatch-runner", "--", "fastq-stats",
                                                                         "{input}"]
    assert host_command(["python", "-c", "pass"]) == ["python", "-c", "pass"]
    assert host_command(list(RUNNER_LAUNCH[:3])) == list(RUNNER_LAUNCH[:3])


def test_container_names_are_engine_safe_and_name_the_attempt():
    assert container_name("labbatch", "j-01ABC", "3", "a2", "deadbeef") == "labbatch-j-01ABC-3-a2-deadbeef"
    assert container_name("labbatch", "odd id:/x", "", "a1") == "labbatch-odd-id-x-a1"


def test_a_missing_image_reason_names_it_and_says_nothing_is_pulled():
    reason = image_missing_reason("quay.io/x:1", "docker")
    assert reason.startswith('CannotPullContainerError: image "quay.io/x:1" is not present')
    assert "never pulls" in reason


def test_host_executor_translates_a_job_definitions_runner_launch(tmp_path):
    """A definition shaped as in AWS (RUNNER_LAUNCH + tool) runs the host's runner on the host."""
    definition = {"name": "shaped", "image": "demo", "vcpus": 1, "memory_mib": 300,
                  "command": [*RUNNER_LAUNCH, sys.executable, "-c", "print('tool ran')"]}
    with local_batch(tmp_path, [definition]) as (_, client, _rec):
        job_id = client.submit_job(jobName="d", jobQueue=ON_DEMAND_QUEUE, jobDefinition="shaped")["jobId"]
        job = wait_for(client, job_id)
    # The runner itself ran (it refuses a job without its contract variables: exit 64), not the loader path.
    assert job["status"] == "FAILED" and job["attempts"][0]["container"]["exitCode"] == 64, job


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    local_command.local_arguments(parser)
    return parser.parse_args(list(argv))


def test_docker_and_no_containers_together_are_refused(capsys):
    assert local_command.run_local(parse("--docker", "--no-containers")) == 1
    assert "contradict" in capsys.readouterr().err


def test_insisting_on_an_engine_without_one_is_a_clear_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LABBATCH_HOME", str(tmp_path))
    monkeypatch.setattr("labbatch.local.lab.find_engine", lambda candidates: None)
    assert local_command.run_local(parse("--docker")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("labbatch: no_docker: no container engine answered") and "\n" not in err


def test_the_demo_runs_in_containers_only_when_the_engine_holds_its_images(monkeypatch):
    import labbatch.local.docker_runner as docker_runner
    from labbatch.demo import demo_executor

    monkeypatch.setattr(docker_runner, "find_engine", lambda candidates=docker_runner.ENGINES: None)
    assert demo_executor() == ("host", "no container engine answers")
    monkeypatch.setattr(docker_runner, "find_engine", lambda candidates=docker_runner.ENGINES: "docker")
    monkeypatch.setattr(docker_runner, "image_id", lambda engine, ref: None if ref == DEMO_TAG else "sha256:1")
    assert demo_executor() == ("host", f"{DEMO_TAG} not built yet: make images")
    monkeypatch.setattr(docker_runner, "image_id", lambda engine, ref: "sha256:1")
    assert demo_executor() == ("docker", None)


def test_run_local_in_process_gives_the_caller_its_signal_handlers_back(monkeypatch, capsys, tmp_path):
    import signal

    monkeypatch.setenv("LABBATCH_HOME", str(tmp_path))
    monkeypatch.setattr("labbatch.local.lab.find_engine", lambda candidates: None)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert local_command.run_local(parse("--docker")) == 1
    assert {s: signal.getsignal(s) for s in before} == before


def _fake_engine(tmp_path, *, ps_exit: int = 0, mounted: str = "") -> str:
    """A `docker` that lists one container, which mounts `mounted`."""
    engine = tmp_path / "fake-docker"
    engine.write_text("#!/bin/sh\n"
                      f'case "$1" in ps) echo c1; exit {ps_exit};; inspect) printf "%s\\n" "{mounted}";; esac\n')
    engine.chmod(0o755)
    return str(engine)


def _tree(trees, name: str, age_seconds: float):
    import time

    tree = trees / name
    (tree / "usr").mkdir(parents=True)
    (tree / ".complete").write_text("sha256:x\n")
    old = time.time() - age_seconds
    os.utime(tree / ".complete", (old, old))
    return tree


def test_old_runner_trees_go_unless_recent_or_mounted(tmp_path):
    from labbatch.local.docker_runner import PRUNE_AFTER_SECONDS, prune_runner_trees

    trees = tmp_path / "runner-trees"
    current = _tree(trees, "current", 10 * PRUNE_AFTER_SECONDS)  # the one starting now: never
    unused = _tree(trees, "unused", 2 * PRUNE_AFTER_SECONDS)
    mounted = _tree(trees, "mounted", 2 * PRUNE_AFTER_SECONDS)  # a running lab's container uses it
    _tree(trees, "recent", PRUNE_AFTER_SECONDS / 2)
    (trees / ".partial-extraction").mkdir()

    removed = prune_runner_trees(_fake_engine(tmp_path, mounted=str(mounted)), trees, keep=current)

    assert removed == [unused]
    assert sorted(p.name for p in trees.iterdir()) == [".partial-extraction", "current", "mounted", "recent"]


def test_runner_trees_stay_when_the_engine_cannot_say_what_is_mounted(tmp_path):
    from labbatch.local.docker_runner import PRUNE_AFTER_SECONDS, prune_runner_trees

    trees = tmp_path / "runner-trees"
    current = _tree(trees, "current", 0)
    old = _tree(trees, "old", 2 * PRUNE_AFTER_SECONDS)
    assert prune_runner_trees(_fake_engine(tmp_path, ps_exit=1), trees, keep=current) == []
    assert old.exists()
