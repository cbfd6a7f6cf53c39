"""Issue 12 end to end in local mode: `labbatch why` explains real waits (a disabled compute
environment, a disabled queue, a machine at its max vCPUs), `labbatch doctor` is all green on a
healthy lab and names the failing check with its fix on a broken one, and GET /pipelines shows
this machine's limits."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import yaml

from tests.e2e.conftest import LABBATCH, ROOT, SLOW, RunningLab

WAITING_AFTER_SECONDS = 1
MISSING_TOOL = "labbatch-no-such-tool"


def labs_dir(tmp_path: Path, extra_pipelines: dict | None = None) -> Path:
    labs = tmp_path / "labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["pipelines"]["slow"] = SLOW
    data["pipelines"].update(extra_pipelines or {})
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return labs


def start(tmp_path: Path, labs: Path) -> RunningLab:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(LABBATCH_HOME=str(home), LABBATCH_WAITING_AFTER_SECONDS=str(WAITING_AFTER_SECONDS))
    process = subprocess.Popen([LABBATCH, "local", "--labs-dir", str(labs), "--no-containers"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"labbatch local did not start: {process.stderr.read()}")
    return RunningLab(process, json.loads(line), home)


def labbatch(lab: RunningLab, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LABBATCH_ENDPOINT"}
    env["LABBATCH_HOME"] = str(lab.home)
    return subprocess.run([LABBATCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


def local_batch(lab: RunningLab):
    keys = lab.info["credentials"]
    return boto3.client("batch", endpoint_url=lab.info["batch_endpoint"], region_name=lab.info["region"],
                        aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"])


def until(predicate, timeout: float = 30, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("why")
    running = start(tmp, labs_dir(tmp))
    yield running
    assert running.stop() == 0


@pytest.fixture
def reads(lab) -> str:
    return lab.put("inputs", "why/reads.fastq", b"@r0\nACGTACGT\n+\nIIIIIIII\n")


def waiting(lab, job_id: str) -> dict:
    return until(lambda: lab.client().get(job_id).get("waiting_because"))


def test_pipelines_show_limits_this_machine_can_give(lab):
    cores = os.cpu_count() or 1
    for pipeline in lab.client().pipelines():
        assert 1 <= pipeline["limits"]["max_vcpus"] <= cores, pipeline
        assert pipeline["limits"]["max_memory_mib"] >= pipeline["defaults"]["memory_mib"]


def test_why_a_disabled_compute_environment_then_a_disabled_queue(lab, reads):
    batch = local_batch(lab)
    ce, queue = "labbatch-example-on-demand", "labbatch-example-on-demand"
    batch.update_compute_environment(computeEnvironment=ce, state="DISABLED")
    try:
        job = lab.client().submit("fastq-stats", [reads], queue="on-demand")
        assert waiting(lab, job["job_id"])["cause"] == "compute_environment_disabled"
        why = labbatch(lab, "why", job["job_id"])
        assert why.returncode == 0, why.stderr
        assert f"{job['job_id']} is RUNNABLE, waiting for" in why.stdout
        assert f"Why: Every compute environment of queue {queue} is disabled: {ce} is DISABLED." in why.stdout
        assert f"Fix: An administrator enables it: aws batch update-compute-environment --compute-environment {ce} " \
               "--state ENABLED" in why.stdout

        batch.update_job_queue(jobQueue=queue, state="DISABLED")
        answer = lab.client().get(job["job_id"])["waiting_because"]
        assert answer["cause"] == "queue_disabled" and answer["details"] == {"queue": queue}
    finally:
        batch.update_job_queue(jobQueue=queue, state="ENABLED")
        batch.update_compute_environment(computeEnvironment=ce, state="ENABLED")
    # Enabled again, it runs, and there is nothing left to explain.
    record = until(lambda: (r := lab.client().get(job["job_id"]))["status"] == "SUCCEEDED" and r)
    assert "waiting_because" not in record or record["waiting_because"] is None
    assert "SUCCEEDED; outputs under" in labbatch(lab, "why", job["job_id"]).stdout


def test_why_the_machine_is_at_its_max_vcpus(lab, reads):
    client = lab.client()
    limit = client.pipelines()[0]["limits"]["max_vcpus"]
    cores = os.cpu_count() or 1
    hogs = []
    try:
        while sum(h["vcpus"] for h in hogs) < cores:
            job = client.submit("slow", [reads], vcpus=limit)
            hogs.append({"id": job["job_id"], "vcpus": limit})
        for hog in hogs:
            until(lambda: client.get(hog["id"])["status"] == "RUNNING")
        job = client.submit("fastq-stats", [reads])
        answer = waiting(lab, job["job_id"])
        assert answer["cause"] == "at_max_vcpus", answer
        assert answer["details"]["vcpus_in_use"] == sum(h["vcpus"] for h in hogs)
        assert f"{answer['details']['vcpus_in_use']} of {answer['details']['max_vcpus']} in use" in answer["message"]
        why = json.loads(labbatch(lab, "why", job["job_id"], "--json").stdout)
        assert why["waiting_because"]["cause"] == "at_max_vcpus" and why["status"] == "RUNNABLE"
    finally:
        for hog in hogs:
            client.cancel(hog["id"])
    assert until(lambda: client.get(job["job_id"])["status"] == "SUCCEEDED", timeout=60)


def test_why_a_running_or_failed_job_says_where_it_is(lab):
    client = lab.client()
    missing = lab.put("inputs", "why/not-fastq.txt", b"this is not a FASTQ file\n")
    job = client.submit("fastq-stats", [missing])
    until(lambda: client.get(job["job_id"])["status"] == "FAILED", timeout=60)
    why = labbatch(lab, "why", job["job_id"])
    assert why.returncode == 0
    assert why.stdout.startswith(f"{job['job_id']} FAILED")
    assert "Attempts:" in why.stdout


def test_doctor_is_all_green_on_a_healthy_local_lab(lab):
    result = labbatch(lab, "doctor")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert all(line.startswith("ok    ") for line in lines[:-1]), result.stdout
    names = [line[6:].split(":", 1)[0] for line in lines[:-1]]
    assert names[:2] == ["API reachable", "caller authorised"]
    for expected in ("queue spot", "queue on-demand", "compute environment labbatch-example-spot",
                     "compute environment labbatch-example-on-demand", "canary on spot", "canary on on-demand",
                     "pipeline fastq-stats image", "pipeline align image", "pipeline slow image"):
        assert expected in names, names
    assert lines[-1] == f"{len(lines) - 1} of {len(lines) - 1} checks passed"
    canary = next(line for line in lines if line.startswith("ok    canary on spot"))
    assert "read the inputs bucket, wrote s3://" in canary and "manifest.json, logged to" in canary

    # A scientist's list does not show the canaries; --all does.
    canary_ids = {line.split()[4] for line in lines if line.startswith("ok    canary on ")}
    assert len(canary_ids) == 2 and all(i.startswith("j-") for i in canary_ids), lines
    listed = labbatch(lab, "list", "--json")
    assert listed.returncode == 0 and "canary job(s) of `labbatch doctor` not shown: add --all" in listed.stderr
    assert not canary_ids & {job["job_id"] for job in json.loads(listed.stdout)["jobs"]}
    everything = labbatch(lab, "list", "--all", "--json")
    assert canary_ids <= {job["job_id"] for job in json.loads(everything.stdout)["jobs"]}


def test_doctor_json_lists_every_check(lab):
    result = labbatch(lab, "doctor", "--no-canary", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] is True
    assert not any(c["check"].startswith("canary") for c in report["checks"])


def test_doctor_names_a_disabled_queue_and_its_fix(lab):
    batch = local_batch(lab)
    queue = "labbatch-example-on-demand"
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    try:
        result = labbatch(lab, "doctor")
    finally:
        batch.update_job_queue(jobQueue=queue, state="ENABLED")

    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == [
        f"FAIL  queue on-demand: {queue} is DISABLED: it starts no jobs -- fix: restart `labbatch local --lab example` "
        f"(it starts everything enabled), or: aws batch update-job-queue --job-queue {queue} --state ENABLED "
        f"--endpoint-url {lab.info['batch_endpoint']}",
        f"FAIL  canary on on-demand: not run: queue {queue} does not take jobs -- fix: enable the queue (see above), "
        "then run doctor again",
    ]
    assert "ok    canary on spot" in result.stdout


def test_doctor_names_a_pipeline_whose_program_is_missing(tmp_path):
    broken = {"image": "demo", "command": [MISSING_TOOL, "{input}", "--output-dir", "{output_dir}"]}
    lab = start(tmp_path, labs_dir(tmp_path, {"broken": broken}))
    try:
        result = labbatch(lab, "doctor", "--lab", "example")
    finally:
        assert lab.stop() == 0

    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith(f"FAIL  pipeline broken image: {MISSING_TOOL} is not on this machine's PATH")
    assert "-- fix: install it" in failed[0] and "pipelines.broken.command" in failed[0]
    assert "ok    canary on spot" in result.stdout


def test_doctor_without_a_running_lab_says_how_to_start_one(tmp_path):
    lab = RunningLab(process=None, info={}, home=tmp_path / "nobody-home")  # type: ignore[arg-type]
    result = labbatch(lab, "doctor", "--lab", "example")
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("FAIL  API reachable: ") and "-- fix: start it with `labbatch local --lab example`" in first
