"""`labbatch local` running every attempt in a real container of the job's own, unmodified image.

Needs a container engine (docker or podman) holding labbatch-runner:local, labbatch-demo:local and
labbatch-bwa:local (`make images`). Without them these tests skip, saying why; under CI=true
they fail instead, so a CI machine cannot pass them by accident. Every answer the tests check
is computed here from the data they wrote, never taken from a run.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labbatch_pipelines.simulate import make_reference, simulate_reads
from labbatch.local.docker_runner import DEMO_TAG, RUNNER_IMAGE, find_engine, image_id

from tests.containers.conftest import missing
from tests.e2e.conftest import ROOT, RunningLab, start_local
from tests.e2e.test_local_mode import wait

BWA_TAG = "labbatch-bwa:local"
ABSENT_IMAGE = "quay.io/labbatch-test/absent:1"
ENGINE = find_engine()
RUNNER = os.environ.get("LABBATCH_RUNNER_IMAGE") or RUNNER_IMAGE  # as `labbatch local` reads it

# bwa and samtools are separate programs and the runner runs one: the tool image's own /bin/sh
# (Debian minbase has dash) chains them; the runner itself needs no shell.
BWA_SCRIPT = ('bwa index "$1" 2>/dev/null && bwa mem -t 1 "$1" "$2" > "$3/aln.sam" 2>/dev/null '
              '&& samtools flagstat "$3/aln.sam" > "$3/flagstat.txt"')
NO_RECOVERY = {"spot_to_on_demand": False, "more_memory": False, "infrastructure_retry": False}
PIPELINES = {
    "bwa-flagstat": {"image": BWA_TAG, "vcpus": 1, "memory_mib": 1024, "attempts": 1,
                     "default_queue": "on-demand", "parameters": {"reference": None},
                     "command": ["sh", "-c", BWA_SCRIPT, "sh", "{param:reference}", "{input}", "{output_dir}"]},
    # No shell, no Python: coreutils' tail buffers an endless line until the engine's OOM killer acts.
    "hog": {"image": BWA_TAG, "vcpus": 1, "memory_mib": 256, "attempts": 1, "default_queue": "on-demand",
            "recovery": dict(NO_RECOVERY), "command": ["tail", "/dev/zero"]},
    "sleeper": {"image": BWA_TAG, "vcpus": 1, "memory_mib": 256, "attempts": 1, "default_queue": "on-demand",
                "recovery": dict(NO_RECOVERY), "command": ["sleep", "600"]},
    "absent": {"image": ABSENT_IMAGE, "vcpus": 1, "memory_mib": 256, "attempts": 1, "default_queue": "on-demand",
               "recovery": dict(NO_RECOVERY), "command": ["true"]},
}


def require_engine_and_images(*images: str) -> str:
    problem = None
    if ENGINE is None:
        problem = "no container engine answers (docker info / podman info)"
    else:
        absent = [image for image in (RUNNER, *images) if image_id(ENGINE, image) is None]
        if absent:
            problem = f"not in the {ENGINE} engine: {', '.join(absent)} (build them with make images)"
    if problem is not None:
        missing(problem)  # skips, or fails under CI
    return ENGINE


def container_labs_dir(tmp_path: Path) -> Path:
    labs = tmp_path / "container-labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["pipelines"].update(PIPELINES)
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return labs


@pytest.fixture(scope="module")
def engine() -> str:
    return require_engine_and_images(BWA_TAG)


@pytest.fixture(scope="module")
def container_lab(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("containers")
    lab = start_local(tmp, labs_dir=container_labs_dir(tmp), containers=True)
    assert lab.info["executor"] == engine, lab.info
    yield lab
    assert lab.stop() == 0


@pytest.fixture(scope="module")
def host_lab(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host")
    lab = start_local(tmp, labs_dir=container_labs_dir(tmp))
    assert lab.info["executor"] == "host", lab.info
    yield lab
    assert lab.stop() == 0


def engine_run(*args: str) -> str:
    return subprocess.run([ENGINE, *args], capture_output=True, text=True, check=True, timeout=60).stdout


def containers_named(fragment: str) -> list[str]:
    return engine_run("ps", "--all", "--filter", f"name={fragment}", "--format", "{{.Names}}").split()


def read_text(lab: RunningLab, uri: str) -> str:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return lab.s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def reads_of(fastq_bytes: bytes) -> list[str]:
    lines = fastq_bytes.decode().splitlines()
    return [lines[i + 1] for i in range(0, len(lines), 4)]


def with_random_reads(path: Path, n: int, length: int, seed: int) -> bytes:
    """The simulated reads plus `n` random ones that come from nowhere in the reference."""
    rng = random.Random(seed)
    extra = "".join(f"@junk{i}\n{''.join(rng.choice('ACGT') for _ in range(length))}\n+\n{'I' * length}\n"
                    for i in range(n))
    return path.read_bytes() + extra.encode()


def simulated_sample(tmp: Path, seed: int, mapped: int, junk: int) -> tuple[bytes, bytes]:
    """(reference FASTA, reads FASTQ): `mapped` reads simulated from the reference, `junk` random."""
    reference = tmp / f"ref-{seed}.fa"
    make_reference(reference, length=5_000, seed=seed, n_contigs=2)
    reads = tmp / f"reads-{seed}.fq"
    # Error-free reads of unique random sequence: every one maps, whichever aligner; the junk none.
    simulate_reads(reference, reads, n_reads=mapped, read_length=100, seed=seed + 1)
    return reference.read_bytes(), with_random_reads(reads, junk, 100, seed + 2)


def primary_mapped(flagstat: str) -> int:
    match = re.search(r"^(\d+) \+ \d+ primary mapped", flagstat, re.M) or \
        re.search(r"^(\d+) \+ \d+ mapped", flagstat, re.M)
    assert match, flagstat
    return int(match.group(1))


def test_demo_tools_give_the_same_true_answers_in_containers_as_on_the_host(container_lab, host_lab, tmp_path):
    require_engine_and_images(DEMO_TAG)
    reference, reads = simulated_sample(tmp_path, seed=21, mapped=120, junk=30)
    sequences = reads_of(reads)
    outcomes = {}
    for lab in (container_lab, host_lab):
        client = lab.client()
        fq = lab.put("inputs", "same/reads.fastq.gz", gzip.compress(reads))
        ref = lab.put("references", "same/ref.fa", reference)
        stats = client.submit("fastq-stats", [fq])
        align = client.submit("align", [fq], parameters={"reference": ref})
        outcomes[lab.info["executor"]] = (lab, wait(client, stats["job_id"], 60), wait(client, align["job_id"], 60))
    assert set(outcomes) == {ENGINE, "host"}
    for executor, (lab, stats, align) in outcomes.items():
        assert stats["status"] == align["status"] == "SUCCEEDED", (executor, stats, align)
        got = lab.read_json(f"{stats['output_prefix']}stats.json")
        assert (got["reads"], got["bases"]) == (len(sequences), sum(map(len, sequences))), executor
        aligned = lab.read_json(f"{align['output_prefix']}align.json")
        assert (aligned["reads"], aligned["mapped"]) == (150, 120), executor
        manifest = lab.read_json(f"{stats['output_prefix']}manifest.json")
        in_container = manifest["tool"]["argv"][1].startswith("/scratch/")
        assert in_container == (executor != "host"), manifest["tool"]["argv"]


def test_bwa_and_samtools_image_runs_unmodified_plain_and_as_an_array(container_lab, tmp_path):
    client = container_lab.client()
    samples, expected = [], {}
    for seed, (mapped, junk) in zip((31, 41, 51), ((80, 20), (60, 0), (40, 40))):
        reference, reads = simulated_sample(tmp_path, seed, mapped, junk)
        name = f"s{seed}"
        samples.append({"name": name, "inputs": [container_lab.put("inputs", f"bwa/{name}.fq", reads)],
                        "parameters": {"reference": container_lab.put("references", f"bwa/{name}.fa", reference)}})
        expected[name] = mapped
    plain = client.submit("bwa-flagstat", samples[0]["inputs"], parameters=samples[0]["parameters"])
    array = client.submit("bwa-flagstat", samples=samples[1:])

    record = wait(client, plain["job_id"], 60)
    assert record["status"] == "SUCCEEDED", record
    assert primary_mapped(read_text(container_lab, f"{plain['output_prefix']}flagstat.txt")) == expected["s31"]
    record = wait(client, array["job_id"], 60)
    assert record["status"] == "SUCCEEDED", record
    for sample in samples[1:]:
        flagstat = read_text(container_lab, f"{array['output_prefix']}{sample['name']}/flagstat.txt")
        assert primary_mapped(flagstat) == expected[sample["name"]], sample["name"]
    assert containers_named(f"labbatch-{plain['job_id']}") == []
    assert containers_named(f"labbatch-{array['job_id']}") == []


def test_an_attempt_over_its_memory_is_killed_by_the_engine_and_classed_out_of_memory(container_lab):
    client = container_lab.client()
    uri = container_lab.put("inputs", "hog/x.txt", b"x")
    job = client.submit("hog", [uri])
    record = wait(client, job["job_id"], 60)
    assert (record["status"], record["failure"]) == ("FAILED", "out_of_memory"), record
    # The runner saw it from inside: its container's memory cgroup counted the kill (whether or not
    # the engine's OOMKilled flag, and so ECS's reason, says it too).
    manifest = container_lab.read_json(f"{job['output_prefix']}manifest.json")
    assert manifest["tool"]["signal"] == "SIGKILL" and manifest["tool"]["oom_killed"] is True, manifest["tool"]
    assert containers_named(f"labbatch-{job['job_id']}") == []


def test_cancelling_a_running_container_job_leaves_no_container_volume_or_scratch(container_lab):
    client = container_lab.client()
    uri = container_lab.put("inputs", "sleep/x.txt", b"x")
    job = client.submit("sleeper", [uri])
    deadline = time.monotonic() + 30
    while not containers_named(f"labbatch-{job['job_id']}") or client.get(job["job_id"])["status"] != "RUNNING":
        assert time.monotonic() < deadline, client.get(job["job_id"])
        time.sleep(0.2)
    [name] = containers_named(f"labbatch-{job['job_id']}")
    mounts = json.loads(engine_run("inspect", "--format", "{{json .Mounts}}", name))
    volumes = [m["Name"] for m in mounts if m.get("Type") == "volume"]
    scratch = [Path(m["Source"]) for m in mounts if m.get("Destination") == "/scratch"]
    assert scratch and scratch[0].is_dir()

    client.cancel(job["job_id"])
    record = wait(client, job["job_id"], 30)
    assert (record["status"], record["failure"]) == ("FAILED", "cancelled"), record
    assert containers_named(f"labbatch-{job['job_id']}") == []
    present = set(engine_run("volume", "ls", "--quiet").split())
    assert not present & set(volumes)
    assert not scratch[0].exists()


def test_an_image_the_engine_lacks_fails_the_job_naming_it_and_nothing_is_pulled(container_lab):
    client = container_lab.client()
    uri = container_lab.put("inputs", "absent/x.txt", b"x")
    job = client.submit("absent", [uri])
    record = wait(client, job["job_id"], 30)
    assert (record["status"], record["failure"]) == ("FAILED", "infrastructure"), record
    reason = record["attempts"][-1]["reason"]
    assert f'CannotPullContainerError: image "{ABSENT_IMAGE}" is not present in the local container engine' in reason
    assert "never pulls" in reason
    assert image_id(ENGINE, ABSENT_IMAGE) is None


def test_containers_of_a_killed_local_mode_are_removed_at_the_next_start(engine):
    from labbatch.local.docker_runner import OWNER_LABEL, remove_orphans

    gone = subprocess.Popen(["true"])
    gone.wait()
    name = f"labbatch-orphan-test-{gone.pid}"
    engine_run("create", "--pull", "never", "--label", f"{OWNER_LABEL}={gone.pid}", "--name", name, RUNNER,
               "/nothing")
    alive = f"labbatch-alive-test-{os.getpid()}"
    engine_run("create", "--pull", "never", "--label", f"{OWNER_LABEL}={os.getpid()}", "--name", alive, RUNNER,
               "/nothing")
    try:
        assert name in remove_orphans(engine)
        assert containers_named(name) == [] and containers_named(alive) == [alive]
    finally:
        engine_run("rm", "--force", name, alive)


def test_a_spot_reclaim_stops_the_container_and_leaves_nothing(engine, tmp_path):
    lab = start_local(tmp_path, "--spot-interruptions", "1.0", "--seed", "7", labs_dir=container_labs_dir(tmp_path),
                      containers=True)
    try:
        client = lab.client()
        job = client.submit("sleeper", [lab.put("inputs", "reclaim/x.txt", b"x")], queue="spot")
        record = wait(client, job["job_id"], 30)
        assert (record["status"], record["failure"]) == ("FAILED", "spot_reclaimed"), record
        assert record["attempts"][-1]["reason"].startswith("Host EC2 (instance i-")
        assert containers_named(f"labbatch-{job['job_id']}") == []
    finally:
        assert lab.stop() == 0
