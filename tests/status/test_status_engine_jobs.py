"""Batch events of jobs Nextflow submitted itself (no LABBATCH_JOB_ID; an `nf-` job definition):
the status updater records them instead of dropping them, once, with a failure class, and lists
them like any job. The event shape is Batch's (as in batch_events/), with what Nextflow's
SubmitJob gives a job (nf-amazon 3.10.2, AwsBatchTaskHandler.newSubmitRequest)."""

from __future__ import annotations

import copy

from tests.api_lab import RESULTS_BUCKET

BATCH_JOB_ID = "7d0c5a44-1e52-4c1e-8d0f-3a3f2b1c9e77"
WORK = f"s3://{RESULTS_BUCKET}/nextflow/work/ab/cdef0123"


def nextflow_event(status: str, *, queue: str = "labbatch-example-spot", definition: str = "nf-quay-io-bwa:2",
                   exit_code: int | None = None, attempts: int = 1) -> dict:
    command = ["bash", "-o", "pipefail", "-c",
               f"trap ...; /opt/labbatch/runner/bin/aws --region us-east-1 s3 cp --only-show-errors "
               f"{WORK}/.command.run - | bash > >(tee .command.log) 2>&1 & pid=$!; wait $pid"]
    attempt = {"container": {"exitCode": exit_code, "logStreamName": "nf-quay-io-bwa/default/abc"},
               "startedAt": 1793613660000, "stoppedAt": 1793613900000,
               "statusReason": "Essential container in task exited"}
    return {
        "version": "0", "id": f"evt-{status}", "detail-type": "Batch Job State Change", "source": "aws.batch",
        "account": "123456789012", "time": "2026-11-02T10:15:00Z", "region": "us-east-1",
        "detail": {
            "jobArn": f"arn:aws:batch:us-east-1:123456789012:job/{BATCH_JOB_ID}", "jobName": "nf-ALIGN_sample1",
            "jobId": BATCH_JOB_ID, "jobQueue": f"arn:aws:batch:us-east-1:123456789012:job-queue/{queue}",
            "status": status, "createdAt": 1793613600000,
            "jobDefinition": f"arn:aws:batch:us-east-1:123456789012:job-definition/{definition}",
            "attempts": [copy.deepcopy(attempt) for _ in range(attempts)] if status in ("SUCCEEDED", "FAILED") else [],
            "tags": {"labbatch:lab": "example"}, "propagateTags": True,
            "statusReason": "Essential container in task exited" if status == "FAILED" else None,
            "container": {"image": "quay.io/bwa:0.7.17", "command": command,
                          "environment": [{"name": "AWS_RETRY_MODE", "value": "standard"}],
                          "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}],
                          "exitCode": exit_code},
        },
    }


def engine_records(lab) -> list[dict]:
    return [r for r in lab.job_records() if r.get("engine") == "nextflow"]


def test_a_nextflow_job_is_recorded_from_its_first_event_and_listed(lab):
    first = lab.deliver(nextflow_event("RUNNABLE"))
    again = lab.deliver(nextflow_event("RUNNABLE"))  # EventBridge delivers at least once
    done = lab.deliver(nextflow_event("SUCCEEDED", exit_code=0))

    assert first["applied"] and not again["applied"] and done["applied"]
    (record,) = engine_records(lab)
    assert record["job_id"] == first["job_id"] and record["job_id"].startswith("j-")
    assert record["pipeline"] == "nextflow:nf-quay-io-bwa" and record["queue"] == "spot"
    assert (record["vcpus"], record["memory_mib"]) == (2, 4096)
    assert record["output_prefix"] == WORK + "/" and record["batch_job_id"] == BATCH_JOB_ID
    assert record["tags"] == {"labbatch:lab": "example"} and record["submitted_by"] == "nextflow"
    listed = lab.call("GET", "/jobs")
    assert listed.status == 200, listed.body
    (job,) = [j for j in listed.body["jobs"] if j["job_id"] == record["job_id"]]
    assert job["status"] == "SUCCEEDED" and job["name"] == "nf-ALIGN_sample1"


def test_a_failed_nextflow_job_gets_its_failure_class_and_no_recovery(lab):
    answer = lab.deliver(nextflow_event("FAILED", exit_code=1))

    assert answer["applied"] and answer["failure"] == "application" and "recovery" not in answer
    (record,) = engine_records(lab)
    assert record["status"] == "FAILED" and record["failure"] == "application"
    assert "recovered_by" not in record and "recovery_refused" not in record
    assert len(lab.job_records()) == 1  # nothing resubmitted: Nextflow retries its own tasks


def test_events_of_other_jobs_without_a_ledger_id_are_still_dropped(lab):
    other_lab = lab.deliver(nextflow_event("RUNNABLE", queue="labbatch-genomics-core-spot"))
    not_an_engine = lab.deliver(nextflow_event("RUNNABLE", definition="someone-elses-def:1"))

    assert other_lab == {"applied": False, "reason": "an engine's job on another lab's queue"}
    assert not_an_engine == {"applied": False, "reason": "not a LabBatch job"}
    assert lab.job_records() == []
