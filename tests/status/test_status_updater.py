"""The status updater on realistic Batch "Job State Change" events (tests/batch_events/):
in order, out of order, duplicated, for plain and array jobs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.api_lab import READS, REFERENCE, RESULTS_BUCKET

EVENTS = Path(__file__).resolve().parents[1] / "batch_events"
BATCH_JOB_ID = "4c7599ae-0a82-49aa-ba5a-4727fcce14a8"


def load_events(name: str, job_id: str, batch_job_id: str = BATCH_JOB_ID) -> list[dict]:
    text = (EVENTS / name).read_text().replace("{{JOB_ID}}", job_id).replace("{{BATCH_JOB_ID}}", batch_job_id)
    return json.loads(text)


def pending_record(lab, job_id: str = "j-0000000000000000000000000a", **extra) -> str:
    """A ledger record as the API leaves it just before SubmitJob."""
    from labbatch_api.ledger import JobLedger

    JobLedger(lab.dynamodb, "labbatch-example-jobs").create_pending(
        {
            "job_id": job_id,
            "record_type": "job",
            "created_at": "2026-11-02T09:59:59.000000Z",
            "pipeline": "fastq-stats",
            "queue": "spot",
            "submitted_by": "arn:aws:iam::123456789012:user/alice",
            "output_prefix": f"s3://{RESULTS_BUCKET}/jobs/{job_id}/",
            "inputs": [READS],
            "parameters": {},
            "vcpus": 1,
            "memory_mib": 2048,
            "status": "PENDING_SUBMIT",
            "status_reason": "Recorded; submitting to AWS Batch",
            "progress": 0,
            "attempts": [],
            **extra,
        }
    )
    return job_id


def record(lab, job_id: str) -> dict:
    return next(item for item in lab.ledger_items() if item["job_id"] == job_id)


def view(lab, job_id: str) -> dict:
    answer = lab.call("GET", f"/jobs/{job_id}")
    assert answer.status == 200, answer.body
    return answer.body


def test_plain_job_through_a_spot_reclaim_to_success(lab):
    job_id = pending_record(lab)

    results = [lab.deliver(event) for event in load_events("plain_job_retried_then_succeeded.json", job_id)]

    assert all(r["applied"] for r in results)
    job = view(lab, job_id)
    assert job["status"] == "SUCCEEDED"
    assert job["status_reason"] == "Essential container in task exited"
    assert job["batch_job_id"] == BATCH_JOB_ID
    assert job["started_at"] == "2026-11-02T10:06:40.000000Z"
    assert job["stopped_at"] == "2026-11-02T10:15:00.000000Z"
    assert job["log"] == {"group": "/labbatch/example/jobs", "stream": "fastq-stats/default/6f5e4d3c2b1a"}
    assert job["attempts"] == [
        {
            "exit_code": None,
            "reason": "Host EC2 (instance i-0123456789abcdef0) terminated.",
            "stderr_tail": None,
            "log_stream": "fastq-stats/default/1a2b3c4d5e6f",
            "started_at": "2026-11-02T10:01:00.000000Z",
            "stopped_at": "2026-11-02T10:05:00.000000Z",
        },
        {
            "exit_code": 0,
            "reason": "Essential container in task exited",
            "stderr_tail": None,
            "log_stream": "fastq-stats/default/6f5e4d3c2b1a",
            "started_at": "2026-11-02T10:06:40.000000Z",
            "stopped_at": "2026-11-02T10:15:00.000000Z",
        },
    ]


def test_failed_attempt_records_exit_code_and_reason(lab):
    job_id = pending_record(lab)

    for event in load_events("plain_job_out_of_memory.json", job_id):
        lab.deliver(event)

    job = view(lab, job_id)
    assert job["status"] == "FAILED"
    (attempt,) = job["attempts"]
    assert attempt["exit_code"] == 137
    assert attempt["reason"] == (
        "Essential container in task exited; OutOfMemoryError: Container killed due to memory usage"
    )


def test_a_retry_may_go_back_to_runnable_but_a_late_event_may_not(lab):
    job_id = pending_record(lab)
    events = {(e["detail"]["status"], len(e["detail"]["attempts"])): e for e in load_events(
        "plain_job_retried_then_succeeded.json", job_id)}

    assert lab.deliver(events[("RUNNING", 0)])["applied"]
    assert lab.deliver(events[("RUNNABLE", 1)])["applied"]  # the retry: newer, though "earlier"
    assert not lab.deliver(events[("RUNNING", 0)])["applied"]  # duplicate of the old attempt
    assert not lab.deliver(events[("STARTING", 0)])["applied"]  # late
    assert record(lab, job_id)["status"] == "RUNNABLE"


@pytest.mark.parametrize("seed", range(6))
def test_any_delivery_order_ends_where_the_in_order_one_does(lab, seed):
    expected_id = pending_record(lab, "j-0000000000000000000000000b")
    for event in load_events("plain_job_retried_then_succeeded.json", expected_id):
        lab.deliver(event)
    expected = view(lab, expected_id)

    job_id = pending_record(lab, "j-0000000000000000000000000c")
    shuffled = load_events("plain_job_retried_then_succeeded.json", job_id)
    random.Random(seed).shuffle(shuffled)
    for event in shuffled:
        lab.deliver(event)

    got = view(lab, job_id)
    for field in ("status", "status_reason", "attempts", "stopped_at", "batch_job_id"):
        assert got[field] == expected[field], field


def test_finished_is_final(lab):
    job_id = pending_record(lab)
    events = load_events("plain_job_out_of_memory.json", job_id)

    assert lab.deliver(events[-1])["applied"]
    assert [lab.deliver(e)["applied"] for e in events[:-1]] == [False, False, False]
    assert lab.deliver(events[-1])["applied"] is False  # a duplicate changes nothing either
    assert record(lab, job_id)["status"] == "FAILED"


def test_array_job_counts_children_and_takes_batchs_final_summary(lab):
    job_id = pending_record(lab, array_size=3, children={"SUBMITTED": 3})
    events = load_events("array_job_three_samples.json", job_id)

    counts = []
    for event in events:
        lab.deliver(event)
        counts.append({k: v for k, v in record(lab, job_id)["children"].items() if v})

    assert counts[4] == {"RUNNABLE": 3}
    assert counts[7] == {"RUNNING": 2, "RUNNABLE": 1}
    assert counts[9] == {"SUCCEEDED": 1, "FAILED": 1, "RUNNABLE": 1}
    job = view(lab, job_id)
    assert job["status"] == "FAILED"
    assert job["status_reason"] == "Array Child Job failed"
    assert {k: v for k, v in job["children"].items() if v} == {"SUCCEEDED": 2, "FAILED": 1}
    assert job["array_size"] == 3
    assert record(lab, job_id)["children_final"] is True
    # Children are tracked in items of their own that listing leaves out, and so is the block of
    # their report rows.
    assert {i["job_id"] for i in lab.ledger_items()} == {job_id, f"{job_id}/0", f"{job_id}/1", f"{job_id}/2",
                                                         f"{job_id}/report/0"}
    assert [j["job_id"] for j in lab.call("GET", "/jobs").body["jobs"]] == [job_id]


def test_array_child_events_out_of_order_and_after_the_parent_finished(lab):
    job_id = pending_record(lab, array_size=3, children={"SUBMITTED": 3})
    events = load_events("array_job_three_samples.json", job_id)
    child0 = [e for e in events if e["detail"]["jobId"].endswith(":0")]

    assert lab.deliver(child0[-1])["applied"]  # SUCCEEDED first
    assert not lab.deliver(child0[0])["applied"]  # then its RUNNABLE: stale
    assert {k: v for k, v in record(lab, job_id)["children"].items() if v} == {"SUCCEEDED": 1, "SUBMITTED": 2}

    lab.deliver(events[-1])  # parent's final event with Batch's summary
    lab.deliver(next(e for e in events if e["detail"]["jobId"].endswith(":2") and e["detail"]["status"] == "RUNNING"))
    assert {k: v for k, v in record(lab, job_id)["children"].items() if v} == {"SUCCEEDED": 2, "FAILED": 1}


def test_event_before_the_api_completed_its_record(lab):
    # SubmitJob succeeded but the API's completion write was lost: the event fills it in.
    job_id = pending_record(lab)
    submitted = load_events("plain_job_retried_then_succeeded.json", job_id)[0]

    assert lab.deliver(submitted)["applied"]

    item = record(lab, job_id)
    assert item["status"] == "SUBMITTED" and item["batch_job_id"] == BATCH_JOB_ID
    assert "status_reason" not in item


def test_submission_of_unknown_outcome_is_adopted_by_the_first_event(lab):
    job_id = pending_record(lab)
    from labbatch_api.ledger import JobLedger

    JobLedger(lab.dynamodb, "labbatch-example-jobs").mark_submit_failed(
        job_id, "Outcome unknown", {"code": "ServerException", "message": "", "outcome": "unknown"}, "2026-11-02T10:00:00.000000Z"
    )
    running = load_events("plain_job_out_of_memory.json", job_id)[2]

    assert lab.deliver(running)["applied"]

    item = record(lab, job_id)
    assert item["status"] == "RUNNING" and "submit_error" not in item


def test_a_failed_submission_is_not_revived(lab):
    job_id = pending_record(lab)
    from labbatch_api.ledger import JobLedger

    JobLedger(lab.dynamodb, "labbatch-example-jobs").mark_submit_failed(
        job_id, "Not submitted", {"code": "ThrottlingException", "message": "", "outcome": "not_submitted"}, "2026-11-02T10:00:00.000000Z"
    )

    assert not lab.deliver(load_events("plain_job_out_of_memory.json", job_id)[0])["applied"]
    assert record(lab, job_id)["status"] == "FAILED"


def test_another_batch_job_cannot_move_a_record(lab):
    job_id = pending_record(lab)
    events = load_events("plain_job_out_of_memory.json", job_id)
    lab.deliver(events[0])

    intruder = load_events("plain_job_out_of_memory.json", job_id, batch_job_id="ffffffff-0000-0000-0000-000000000000")
    assert not lab.deliver(intruder[2])["applied"]
    assert record(lab, job_id)["status"] == "SUBMITTED"


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda e: e["detail"]["container"].update(environment=[]), "not a LabBatch job"),
        (lambda e: e.update(source="aws.ecs"), "not a Batch job state change"),
        (lambda e: e["detail"].update(status="EXPLODED"), "malformed event"),
        (lambda e: e["detail"].pop("jobId"), "malformed event"),
    ],
)
def test_events_that_are_not_ours_are_dropped(lab, change, reason):
    job_id = pending_record(lab)
    event = load_events("plain_job_out_of_memory.json", job_id)[0]
    change(event)

    assert lab.deliver(event) == {"applied": False, "reason": reason}
    assert record(lab, job_id)["status"] == "PENDING_SUBMIT"


def test_event_for_a_job_the_ledger_never_had_creates_nothing(lab):
    event = load_events("plain_job_out_of_memory.json", "j-0000000000000000000000000z")[0]

    assert not lab.deliver(event)["applied"]
    assert lab.ledger_items() == []


def test_end_to_end_submit_then_events_from_batchs_own_description(lab):
    """The job the API submitted, fed back as the event Batch would send for it."""
    answer = lab.submit({"pipeline": "align", "inputs": [READS], "parameters": {"reference": REFERENCE}})
    (batch_job,) = lab.batch.describe_jobs(jobs=[answer.body["batch_job_id"]])["jobs"]
    event = {"version": "0", "detail-type": "Batch Job State Change", "source": "aws.batch",
             "time": "2026-11-02T10:00:00Z", "detail": batch_job}

    assert lab.deliver(event)["applied"]
    job = view(lab, answer.body["job_id"])
    assert job["status"] == batch_job["status"] == "SUCCEEDED"
