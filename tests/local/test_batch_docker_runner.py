"""--docker: attempts become `docker run ... IMAGE COMMAND`. No engine runs here, so the executor
is driven against a stand-in `docker` that records its arguments and runs the command itself."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from labbatch.local import command as local_command
from labbatch.local.docker_runner import DEMO_TAG, DockerRunner

from test_batch_helpers import ON_DEMAND_QUEUE, local_batch, wait_for

FAKE_DOCKER = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
assert args[0] == "run"
env, i = {{}}, 1
takes_value = {{"--name", "--network", "--cpus", "--memory", "--volume", "--env"}}
while args[i].startswith("--"):
    if args[i] == "--env":
        key, _, value = args[i + 1].partition("=")
        env[key] = value
    i += 2 if args[i] in takes_value else 1
image, command = args[i], args[i + 1:]
os.execvpe(command[0], command, {{"PATH": os.environ["PATH"], **env}})
"""


def test_argv_limits_resources_shares_scratch_and_passes_only_the_jobs_variables(tmp_path):
    argv = DockerRunner().argv(
        command=["labbatch-runner", "--", "fastq-stats", "{input}"],
        env={"LABBATCH_JOB_ID": "j-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_BATCH_JOB_ATTEMPT": "1",
             "HOME": "/root", "PATH": "/usr/bin"},
        image="demo", vcpus=2, memory_mib=4096, scratch=tmp_path, name="labbatch-abc")
    assert argv == [
        "docker", "run", "--rm", "--name", "labbatch-abc", "--network", "host", "--cpus", "2", "--memory", "4096m",
        "--volume", f"{tmp_path}:{tmp_path}",
        "--env", "AWS_BATCH_JOB_ATTEMPT=1", "--env", "AWS_ENDPOINT_URL=http://127.0.0.1:9", "--env", "LABBATCH_JOB_ID=j-1",
        DEMO_TAG, "labbatch-runner", "--", "fastq-stats", "{input}"]


def test_registry_images_run_as_named(tmp_path):
    argv = DockerRunner().argv(command=["bwa"], env={}, image="quay.io/biocontainers/bwa:0.7.18", vcpus=1,
                               memory_mib=512, scratch=tmp_path, name="n")
    assert argv[-2:] == ["quay.io/biocontainers/bwa:0.7.18", "bwa"]


def test_executor_runs_each_attempt_through_docker_run(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    out = tmp_path / "out.txt"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log)}
    code = f"import os; open({str(out)!r}, 'w').write(os.environ['LABBATCH_MARK'] + ' ' + os.environ['AWS_BATCH_JOB_ATTEMPT'])"
    definition = {"name": "in-image", "command": [sys.executable, "-c", code], "image": "demo", "vcpus": 1,
                  "memory_mib": 300, "environment": {"LABBATCH_MARK": "inside"}}
    with local_batch(tmp_path, [definition], extra_env=env, container_runner=DockerRunner()) as (_, client, _rec):
        job_id = client.submit_job(jobName="d", jobQueue=ON_DEMAND_QUEUE, jobDefinition="in-image")["jobId"]
        assert wait_for(client, job_id)["status"] == "SUCCEEDED"
    assert out.read_text() == "inside 1"
    [argv] = [json.loads(line) for line in log.read_text().splitlines()]
    assert argv[:2] == ["run", "--rm"] and DEMO_TAG in argv
    assert argv[argv.index("--cpus") + 1] == "1" and argv[argv.index("--memory") + 1] == "300m"
    assert f"{tmp_path / 'scratch'}:{tmp_path / 'scratch'}" in argv
    assert "FAKE_DOCKER_LOG=" not in " ".join(argv)  # only the job's own variables enter the container


def test_local_docker_without_an_engine_is_a_clear_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr("labbatch.local.docker_runner.engine_available", lambda: False)
    parser_args = ["--docker"]
    import argparse
    parser = argparse.ArgumentParser()
    local_command.local_arguments(parser)
    assert local_command.run_local(parser.parse_args(parser_args)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("labbatch: no_docker: --docker needs a running Docker engine") and "\n" not in err
