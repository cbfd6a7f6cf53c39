"""Shared set-up for the local Batch tests (no tests here): a lab-shaped executor and a real
boto3 batch client pointed at it."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import boto3

from labbatch.local.batch.service import LocalBatchService
from labbatch.local.batch.executor import LocalBatch

TERMINAL = ("SUCCEEDED", "FAILED")
# The retry rules LabBatch's job definitions carry: retry spot reclaims, stop on anything else.
LAB_RETRY = {"attempts": 3, "evaluateOnExit": [{"action": "RETRY", "onStatusReason": "Host EC2*"},
                                                 {"action": "EXIT", "onReason": "*"}]}
SPOT_QUEUE, ON_DEMAND_QUEUE = "lab-spot", "lab-on-demand"


def python_job(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def definition(name: str, code: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": python_job(code), "memory_mib": 256, **fields}


class Recorder:
    """What the executor delivered: state-change events and log lines, thread-safely."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.logs: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def on_state_change(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def log_sink(self, stream: str, lines: list[str]) -> None:
        with self._lock:
            self.logs.setdefault(stream, []).extend(lines)

    def statuses(self, job_id: str) -> list[str]:
        with self._lock:
            return [e["detail"]["status"] for e in self.events if e["detail"]["jobId"] == job_id]


@contextmanager
def local_batch(tmp_path: Path, definitions: list[dict[str, Any]], **options: Any) -> Iterator[tuple[LocalBatch, Any, Recorder]]:
    recorder = Recorder()
    options.setdefault("kill_grace_seconds", 1.0)
    options.setdefault("compute_environments", [{"name": "lab-spot-ce", "kind": "spot"},
                                                {"name": "lab-on-demand-ce", "kind": "on-demand"}])
    options.setdefault("queues", [
        {"name": SPOT_QUEUE, "priority": 1, "compute_environments": ["lab-spot-ce", "lab-on-demand-ce"]},
        {"name": ON_DEMAND_QUEUE, "priority": 10, "compute_environments": ["lab-on-demand-ce"]},
    ])
    batch = LocalBatch(
        job_definitions=definitions,
        scratch_root=tmp_path / "scratch",
        on_state_change=recorder.on_state_change,
        log_sink=recorder.log_sink,
        **options,
    )
    with LocalBatchService(batch) as service:
        client = boto3.client("batch", endpoint_url=service.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        yield batch, client, recorder


def describe(client: Any, job_id: str) -> dict[str, Any]:
    return client.describe_jobs(jobs=[job_id])["jobs"][0]


def wait_for(client: Any, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = describe(client, job_id)
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.02)


def wait_for_file(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().endswith("\n"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    return path.read_text()


def process_gone(pid: int) -> bool:
    """Gone or a zombie nobody has reaped yet (a zombie runs nothing and holds no memory)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(process_gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


# A job that reports its own pid and a child's (in its group), then waits to be stopped.
SLEEPER_WITH_CHILD = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '300'])\n"
    "path = os.path.join(os.environ['PIDS_DIR'], os.environ['AWS_BATCH_JOB_ID'].replace(':', '-'))\n"
    "open(path, 'w').write(f'{os.getpid()} {child.pid}\\n')\n"
    "time.sleep(300)\n"
)


def env_override(**variables: str) -> dict[str, Any]:
    return {"environment": [{"name": k, "value": v} for k, v in variables.items()]}


assert os.name == "posix"
