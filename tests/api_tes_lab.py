"""The TES API tests' lab: the moto lab of api_lab.py with TES on, a task to vary, and ways to move
a task through Batch's states as the status updater sees them (recorded event shapes from
tests/batch_events/, pointed at the Batch job the API really submitted)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.api_lab import REFERENCE, RESULTS_BUCKET, SETTINGS

BASE = "/ga4gh/tes/v1"
IMAGE = "quay.io/biocontainers/samtools:1.21--h50ea8bc_0"
TES_SETTINGS = {**SETTINGS, "tes": {"allowed_images": ["quay.io/biocontainers/", "labbatch-bwa:"],
                                    "job_role_arn": "arn:aws:iam::123456789012:role/labbatch-example-job",
                                    "execution_role_arn": "arn:aws:iam::123456789012:role/labbatch-example-job-execution",
                                    "log_group": "/labbatch/example/jobs"}}
OUT = f"s3://{RESULTS_BUCKET}/tes/run1/ref.fa.fai"
EVENTS = Path(__file__).parent / "batch_events"


@pytest.fixture
def tes_lab(lab, monkeypatch):
    from labbatch_api import handler as job_api
    from labbatch_status import handler as job_status
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(TES_SETTINGS))
    job_api.runtime.cache_clear()
    job_status.status_ledger.cache_clear()
    yield lab
    job_api.runtime.cache_clear()
    job_status.status_ledger.cache_clear()


def task(**overrides) -> dict[str, Any]:
    body = {
        "name": "faidx-ecoli",
        "inputs": [{"url": REFERENCE, "path": "/data/ref.fa"},
                   {"content": "hello\n", "path": "/data/note.txt"}],
        "outputs": [{"url": OUT, "path": "/data/ref.fa.fai"}],
        "executors": [{"image": IMAGE, "command": ["samtools", "faidx", "/data/ref.fa"], "workdir": "/data"}],
        "resources": {"cpu_cores": 1, "ram_gb": 1},
        "tags": {"project": "ecoli"},
    }
    body.update(overrides)
    return body


def create(lab, body: dict[str, Any]) -> str:
    answer = lab.call("POST", BASE + "/tasks", body)
    assert answer.status == 200, answer.body
    return answer.body["id"]


def record_of(lab, task_id: str) -> dict[str, Any]:
    return next(r for r in lab.job_records() if r["job_id"] == task_id)


def _pointed_at(lab, event: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(event).replace("{{JOB_ID}}", record["job_id"]).replace("{{BATCH_JOB_ID}}",
                                                                              record["batch_job_id"])
    event = json.loads(text)
    [described] = lab.batch.describe_jobs(jobs=[record["batch_job_id"]])["jobs"]
    event["detail"]["container"]["environment"] = described["container"]["environment"]
    event["detail"]["jobQueue"] = described["jobQueue"]
    return event


def move(lab, task_id: str, status: str) -> None:
    """Deliver the recorded plain job's event of `status` (RUNNING, SUCCEEDED, ...) for this task."""
    events = json.loads((EVENTS / "plain_job_retried_then_succeeded.json").read_text())
    event = [e for e in events if e["detail"]["status"] == status][-1]
    answer = lab.deliver(_pointed_at(lab, copy.deepcopy(event), record_of(lab, task_id)))
    assert answer["applied"], answer


def fail(lab, task_id: str, case: str) -> dict[str, Any]:
    """Deliver the recorded FAILED event of `case` (failed_jobs.json) for this task."""
    event = json.loads((EVENTS / "failed_jobs.json").read_text())[case]["event"]
    answer = lab.deliver(_pointed_at(lab, event, record_of(lab, task_id)))
    assert answer["applied"], answer
    return answer


def put_manifest(lab, task_id: str, tes_part: dict[str, Any], **extra) -> None:
    """The runner's manifest for the task's attempt, with the TES part the logs are built from."""
    record = record_of(lab, task_id)
    bucket, _, prefix = record["output_prefix"][len("s3://"):].partition("/")
    manifest = {"manifest_version": 1, "job_id": task_id, "status": "succeeded", "tes": tes_part, **extra}
    lab.s3.put_object(Bucket=bucket, Key=prefix + "manifest.json", Body=json.dumps(manifest).encode())
