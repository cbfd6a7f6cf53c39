"""Jobs that fail for good are announced on the lab's alert topic: once, with what a person needs."""

from __future__ import annotations

import json

import pytest

from labbatch_status import failure_notice
from tests.api_lab import CALLER, SESSION, SETTINGS
from test_failures_recovery import fail, submitted

TOPIC_NAME = f"labbatch-{SETTINGS['lab']}-alerts"


@pytest.fixture
def inbox(lab, monkeypatch):
    """An SQS queue subscribed to the lab's alert topic, as an email address would be."""
    sns, sqs = SESSION.client("sns"), SESSION.client("sqs")
    topic = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv(failure_notice.TOPIC_ENV_VAR, topic)

    def messages() -> list[dict]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]
    return messages


def test_an_application_failure_is_announced_with_job_pipeline_submitter_reason_and_log(lab, inbox):
    job = submitted(lab, name="qc lane 3")
    answer = fail(lab, job, "tool_exit_one")
    assert answer["notified"] is True
    [message] = inbox()
    assert message["Subject"] == f"LabBatch example: job {job['job_id']} failed (application)"
    body = message["Message"]
    for needle in (job["job_id"], "fastq-stats", f"Submitted by:  {CALLER}", "Failure class: application", "Log:",
                   job["output_prefix"], "LabBatch never retries that"):
        assert needle in body, needle


def test_a_recovered_failure_is_not_announced(lab, inbox):
    job = submitted(lab)
    answer = fail(lab, job, "spot_reclaimed_every_attempt")
    assert answer["recovery"]["submitted"] is True
    assert "notified" not in answer and inbox() == []


def test_a_redelivered_failure_is_announced_once(lab, inbox):
    job = submitted(lab)
    fail(lab, job, "tool_exit_one")
    fail(lab, job, "tool_exit_one")
    assert len(inbox()) == 1


def test_no_topic_configured_means_no_notice(lab, monkeypatch):
    monkeypatch.delenv(failure_notice.TOPIC_ENV_VAR, raising=False)
    job = submitted(lab)
    assert fail(lab, job, "tool_exit_one")["notified"] is False


@pytest.mark.parametrize("status,child,applied,recovery,expected", [
    ("FAILED", None, True, None, True),
    ("FAILED", None, True, {"refused": {"kind": "more_memory", "reason": "over the limit"}}, True),
    ("FAILED", None, True, {"kind": "more_memory", "submitted": True}, False),
    ("FAILED", None, True, {"kind": "more_memory", "submitted": False}, True),
    ("FAILED", 3, True, None, False),        # array children are counted on the parent
    ("FAILED", None, False, None, False),    # a redelivery
    ("SUCCEEDED", None, True, None, False),
])
def test_who_gets_a_notice(status, child, applied, recovery, expected):
    assert failure_notice.should_notify(status=status, child_index=child, applied=applied,
                                        recovery=recovery) is expected


def test_subject_stays_within_snss_limit():
    subject, body = failure_notice.notice("a" * 15, {"job_id": "j-" + "x" * 200}, failure="out_of_memory",
                                          status_reason=None, log=None, recovery=None)
    assert len(subject) <= 100 and "(none given)" in body


def test_an_array_notice_names_its_failed_children_by_class_and_index():
    from decimal import Decimal

    record = {"job_id": "j-1", "array_size": 40, "children": {"FAILED": 23, "SUCCEEDED": 17},
              "child_failures": {"application": Decimal(21), "out_of_memory": Decimal(2), "spot_reclaimed": Decimal(0)},
              "failed_child_indexes": {Decimal(i) for i in range(39, 16, -1)}}
    _, body = failure_notice.notice("example", record, failure="application", status_reason=None, log=None,
                                    recovery=None)
    assert "Samples:       23 of 40 failed" in body
    assert "  by class:    application 21, out_of_memory 2\n" in body
    shown = ", ".join(str(i) for i in range(17, 37))
    assert f"  indexes:     {shown} and 3 more (" in body
