"""`labbatch doctor`'s canary on GPU pools: it asks for a GPU there, and a pool whose instances hand
out none fails with the GPU check's own message, naming the pool.

The lab is a stand-in API (GET /lab, POST /jobs, GET /jobs/{id}) in front of moto's S3 and logs,
whose "instances" run each canary's GPU check for real (labbatch_contract.gpu_check, as the runner
does before the tool) with the environment the pool's instances would give it: pool `gpu-broken`
hands out no NVIDIA_VISIBLE_DEVICES (a GPU pool on the wrong AMI), pool `gpu` hands out one."""

from __future__ import annotations

import argparse
import os
import json
import subprocess
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from labbatch.client import doctor
from labbatch_contract import gpu_check, outcome

REGION = "us-east-1"
INPUTS, RESULTS, LOGS = "lab-inputs", "lab-results", "/labbatch/gpulab/jobs"
# What each pool's instances hand a GPU job (the ECS agent sets NVIDIA_VISIBLE_DEVICES on a GPU AMI).
GPU_ENVIRONMENT = {"gpu": {"NVIDIA_VISIBLE_DEVICES": "GPU-5f1c0e9a"}, "gpu-broken": {}}


def _pool(name: str, gpu: bool) -> dict[str, Any]:
    return {"name": name, "gpu": gpu, "limits": {"max_vcpus": 4, "max_memory_mib": 15000, "max_gpus": 1 if gpu else 0}}


def _queue(pool: str) -> dict[str, Any]:
    return {"name": f"labbatch-gpulab-{pool}-spot", "queue": "spot", "pool": pool, "state": "ENABLED",
            "status": "VALID", "compute_environments": []}


VIEW = {
    "lab": "gpulab", "caller": "arn:aws:iam::123456789012:user/operator",
    "buckets": {"inputs": INPUTS, "results": RESULTS},
    "pools": [_pool("default", False), _pool("gpu", True), _pool("gpu-broken", True)],
    "queues": [_queue("default"), _queue("gpu"), _queue("gpu-broken")],
    "pipelines": [{"name": "fastq-stats", "status": "ACTIVE", "image": "labbatch-demo", "log_group": LOGS,
                   "command": ["fastq-stats"], "gpus": 0}],
}


class StandInLab:
    """The job API as doctor calls it; each job 'runs' at once."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.records: dict[str, dict[str, Any]] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def lab(self) -> dict[str, Any]:
        return VIEW

    def submit(self, pipeline: str, inputs: list[str], **options: Any) -> dict[str, Any]:
        job_id = f"job-{len(self.submitted)}"
        self.submitted.append({"pipeline": pipeline, "inputs": inputs, **options})
        pool = options.get("pool") or "default"
        prefix = f"s3://{RESULTS}/jobs/{job_id}/"
        lines, failed_line = ["fastq-stats: 2 reads"], None
        if options.get("gpus"):
            checked = subprocess.run(gpu_check.argv(), env={"PATH": "/usr/bin:/bin", **GPU_ENVIRONMENT[pool]},
                                     capture_output=True, text=True)
            output = (checked.stdout + checked.stderr).strip().splitlines()
            if checked.returncode != 0:
                failed_line = output[-1]
            lines = output + lines
        logs = boto3.client("logs", region_name=REGION)
        logs.create_log_stream(logGroupName=LOGS, logStreamName=job_id)
        logs.put_log_events(logGroupName=LOGS, logStreamName=job_id,
                            logEvents=[{"timestamp": int(time.time() * 1000) + i, "message": line} for i, line in enumerate(lines)])
        if failed_line:
            self.records[job_id] = {
                "job_id": job_id, "status": "FAILED", "output_prefix": prefix, "failure": "application",
                "status_reason": "Essential container in task exited", "log": {"group": LOGS, "stream": job_id},
                "attempts": [{"exit_code": 1, "reason": "Essential container in task exited", "stderr_tail": failed_line}]}
        else:
            boto3.client("s3", region_name=REGION).put_object(
                Bucket=RESULTS, Key=outcome.manifest_key(f"jobs/{job_id}/"), Body=json.dumps({"status": "succeeded"}))
            self.records[job_id] = {"job_id": job_id, "status": "SUCCEEDED", "output_prefix": prefix,
                                    "log": {"group": LOGS, "stream": job_id}}
        return {"job_id": job_id, "status": "SUBMITTED"}

    def get(self, job_id: str) -> dict[str, Any]:
        return self.records[job_id]


class StandInConnection:
    endpoint, region, found_by = "https://gpulab.example", REGION, "--endpoint"

    def __init__(self, lab: StandInLab) -> None:
        self._lab = lab

    def client(self, **kwargs: Any) -> StandInLab:
        return self._lab


@pytest.fixture
def stand_in(monkeypatch):
    # Only moto's in-process AWS: no endpoint or profile left in the environment by a lab started earlier.
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull,
                       "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUTS, RESULTS):
            s3.create_bucket(Bucket=bucket)
        boto3.client("logs", region_name=REGION).create_log_group(logGroupName=LOGS)
        lab = StandInLab()
        monkeypatch.setattr("labbatch.client.command_base.resolve_connection", lambda **_: StandInConnection(lab))
        monkeypatch.setattr(doctor, "local_lab_state", lambda endpoint: None)
        yield lab


def _diagnose(**overrides: Any) -> dict[str, doctor.Check]:
    args = argparse.Namespace(endpoint="https://gpulab.example", lab=None, profile=None, region=REGION, json=True,
                              timeout=5.0, no_canary=False, canary_pipeline="fastq-stats")
    vars(args).update(overrides)
    return {check.name: check for check in doctor.diagnose(args, lambda check: None)}


def test_the_canary_asks_for_a_gpu_on_gpu_pools_only(stand_in):
    _diagnose()

    asked = {job["pool"] or "default": job["gpus"] for job in stand_in.submitted}
    assert asked == {"default": None, "gpu": 1, "gpu-broken": 1}


def test_a_gpu_pool_that_hands_out_no_gpu_fails_its_canary_naming_the_pool(stand_in):
    checks = _diagnose()

    broken = checks["canary on gpu-broken spot"]
    assert not broken.ok
    assert "pool gpu-broken gave its GPU canary no visible GPU" in broken.detail
    assert f"{gpu_check.FAILED_PREFIX} NVIDIA_VISIBLE_DEVICES is ''" in broken.detail
    assert "compute.pools.gpu-broken" in broken.fix and "labbatch logs job-2" in broken.fix
    assert not all(check.ok for check in checks.values())  # so doctor exits 1


def test_a_gpu_pool_that_hands_out_its_gpu_passes_and_says_what_it_saw(stand_in):
    checks = _diagnose()

    good = checks["canary on gpu spot"]
    assert good.ok, good.detail
    assert f"GPU: {gpu_check.OK_PREFIX} NVIDIA_VISIBLE_DEVICES=GPU-5f1c0e9a" in good.detail
    assert checks["canary on spot"].ok and "GPU" not in checks["canary on spot"].detail
    assert not any(name.startswith("GPUs of pool") for name in checks)  # the canaries checked them


def test_without_canaries_doctor_says_the_gpus_were_not_exercised(stand_in):
    checks = _diagnose(no_canary=True)

    assert stand_in.submitted == []
    assert "not exercised (--no-canary)" in checks["GPUs of pool gpu"].detail
