"""The shipped genomics-core lab runs locally with no hand edits: `labbatch local --lab genomics-core`
reads its `local:` block, scales the pipelines that ask more than this machine gives, says so in
the ready line, on stderr, in GET /pipelines and `labbatch pipelines`, admits a job at the
defaults, and runs each attempt in the local image that stands in for the pipeline's own."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labbatch.lab.loader import load_lab
from labbatch.local.lab import local_limits
from tests.e2e.conftest import ROOT, RunningLab, start_local
from tests.e2e.test_why_and_doctor import labbatch, local_batch

LAB = load_lab(ROOT / "labs" / "genomics-core.yaml")
LIMITS = local_limits(LAB)  # this machine's, as the lab computes them
BWA = "quay.io/biocontainers/bwa:0.7.18--he4a0461_1"
READS = b"@r1\nACGTACGTAC\n+\nIIIIIIIIII\n"
BWA_INDEX = (".amb", ".ann", ".bwt", ".pac", ".sa")


def scaled(name: str) -> dict[str, int]:
    pipeline = LAB.pipelines[name]
    return {"vcpus": min(pipeline.vcpus, LIMITS["max_vcpus"]), "memory_mib": min(pipeline.memory_mib, LIMITS["max_memory_mib"])}


# GPU pipelines are not scaled: what stops them on this machine is the GPU (tests/e2e/test_local_pools.py).
BIGGER = sorted(name for name, p in LAB.pipelines.items()
                if not p.gpus and (p.vcpus > LIMITS["max_vcpus"] or p.memory_mib > LIMITS["max_memory_mib"]))


def final(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(job_id)
        if record["status"] in ("SUCCEEDED", "FAILED"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"{job_id} still {record['status']} after {timeout} s")


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    # The shipped labs folder, as a new user runs it (on the host executor: no images needed to start).
    lab = start_local(tmp_path_factory.mktemp("core"), "--lab", "genomics-core", labs_dir=ROOT / "labs")
    yield lab
    assert lab.stop() == 0


def test_this_machine_is_smaller_than_genomics_cores_pipelines():
    # What makes the rest meaningful: without fit_to_machine, these would be refused here.
    assert "bwa-mem" in BIGGER and "fastq-stats" not in BIGGER


def test_the_ready_line_says_what_stands_in_and_what_was_scaled(core):
    assert core.info["stand_ins"] == dict(LAB.local.images)
    assert core.info["fitted_to_machine"] == {
        name: {"from": {"vcpus": LAB.pipelines[name].vcpus, "memory_mib": LAB.pipelines[name].memory_mib},
               "to": scaled(name)} for name in BIGGER}


def test_get_pipelines_shows_the_scaled_defaults_and_the_stand_ins(core):
    pipelines = {p["name"]: p for p in core.client().pipelines()}
    bwa = pipelines["bwa-mem"]
    assert bwa["defaults"]["vcpus"] == scaled("bwa-mem")["vcpus"] <= bwa["limits"]["max_vcpus"]
    assert bwa["defaults"]["memory_mib"] == scaled("bwa-mem")["memory_mib"] <= bwa["limits"]["max_memory_mib"]
    assert bwa["local"] == {"image": BWA, "stand_in": "labbatch-bwa:local",
                            "scaled_from": {"vcpus": 16, "memory_mib": 60000}}
    # What travels with the reference, as the lab file declares it.
    assert bwa["secondary_files"] == {"param:reference": list(BWA_INDEX)}
    assert pipelines["salmon-quant"]["secondary_files"] == {}
    # The demo pipeline fits and has no stand-in of the lab file's: nothing local to say.
    assert "local" not in pipelines["fastq-stats"]
    assert pipelines["fastq-stats"]["defaults"]["vcpus"] == LAB.pipelines["fastq-stats"].vcpus


def test_labbatch_pipelines_shows_it_too(core, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no table cell wraps the words looked for
    result = labbatch(core, "pipelines")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "bwa-mem" in line)
    assert f"{scaled('bwa-mem')['vcpus']} vCPU, {scaled('bwa-mem')['memory_mib']} MiB, spot" in row
    assert f"runs in labbatch-bwa:local for {BWA}; scaled to this machine from 16 vCPU, 60000 MiB" in row
    assert "reference* (+ .amb .ann .bwt .pac .sa)" in row  # the companions that travel with it
    assert "local mode" in result.stdout


def test_a_job_at_the_defaults_is_admitted_and_runs_with_the_scaled_requests(core):
    client = core.client()
    reads = core.put("inputs", "core/r1.fq", READS)
    reference = core.put("references", "core/ref.fa", b">c\nACGTACGTAC\n")
    for suffix in BWA_INDEX:  # bwa-mem's secondary_files: its index travels with the reference
        core.put("references", f"core/ref.fa{suffix}", b"index")
    job = client.submit("bwa-mem", [reads], parameters={"reference": reference})
    assert job["status"] == "SUBMITTED"
    batch = local_batch(core)
    [described] = batch.describe_jobs(jobs=[job["batch_job_id"]])["jobs"]
    container = described["container"]
    asked = {r["type"]: int(r["value"]) for r in container.get("resourceRequirements", [])}
    vcpus = asked.get("VCPU", container.get("vcpus"))
    memory = asked.get("MEMORY", container.get("memory"))
    assert {"vcpus": vcpus, "memory_mib": memory} == scaled("bwa-mem")
    # The job definition registered locally agrees; its image stays the lab's own.
    definition = batch.describe_job_definitions(jobDefinitionName="labbatch-genomics-core-bwa-mem")["jobDefinitions"][0]
    props = definition["containerProperties"]
    registered = {r["type"]: int(r["value"]) for r in props.get("resourceRequirements", [])}
    assert (registered.get("VCPU", props.get("vcpus")), registered.get("MEMORY", props.get("memory"))) == \
        (scaled("bwa-mem")["vcpus"], scaled("bwa-mem")["memory_mib"])
    assert props["image"] == BWA
    final(client, job["job_id"])  # on the host it runs the host's bwa (if any); admitted is what counts


def test_stderr_says_it_in_words(core):
    text = core.stderr_once("pipelines scaled to this machine")
    assert "local images stand in in containers (here jobs run on the host, with its own tools): " \
           f"{BWA} -> labbatch-bwa:local" in text
    assert "pipelines scaled to this machine (local.fit_to_machine): bwa-mem 16 -> " in text


def _fake_engine(tmp_path: Path) -> tuple[Path, Path]:
    """A `docker` that answers and holds only the runner image (whose tree is already extracted)."""
    bin_dir, trees = tmp_path / "bin", tmp_path / "trees"
    bin_dir.mkdir()
    runner_id = "ab" * 32
    (trees / runner_id).mkdir(parents=True)
    (trees / runner_id / ".complete").write_text(f"sha256:{runner_id}\n")
    engine = bin_dir / "docker"
    engine.write_text("#!/bin/sh\n"
                      'case "$1" in\n'
                      "  info|ps) exit 0;;\n"
                      f'  image) [ "$5" = labbatch-runner:local ] && echo sha256:{runner_id} && exit 0; exit 1;;\n'
                      '  *) echo "fake docker: $*" >&2; exit 1;;\n'
                      "esac\n")
    engine.chmod(0o755)
    return bin_dir, trees


def test_in_containers_an_attempt_runs_the_stand_in_and_a_missing_one_fails_naming_it(tmp_path):
    bin_dir, trees = _fake_engine(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LABBATCH_RUNNER_TREES": str(trees)}
    lab: RunningLab = start_local(tmp_path, "--lab", "genomics-core", labs_dir=ROOT / "labs", containers=True, env=env)
    try:
        assert lab.info["executor"] == "docker"
        client = lab.client()
        reads = lab.put("inputs", "core/r1.fq", READS)
        reference = lab.put("references", "core/ref.fa", b">c\nACGTACGTAC\n")
        for suffix in BWA_INDEX:
            lab.put("references", f"core/ref.fa{suffix}", b"index")
        job = client.submit("bwa-mem", [reads], parameters={"reference": reference})
        record = final(client, job["job_id"])
        assert (record["status"], record["failure"]) == ("FAILED", "infrastructure"), record
        assert 'CannotPullContainerError: image "labbatch-bwa:local" is not present in the local container engine' \
            in record["attempts"][-1]["reason"]
    finally:
        assert lab.stop() == 0
    text = lab.stderr_text()
    assert "these pipelines' images are not in the local docker engine" in text and "bwa-mem (labbatch-bwa:local)" in text
    assert f"local images stand in in docker containers: {BWA} -> labbatch-bwa:local" in text
