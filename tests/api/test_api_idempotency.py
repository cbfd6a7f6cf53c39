"""Idempotency-Key: a retried POST returns the same job and never makes a second Batch job."""

from __future__ import annotations

import pytest

from tests.api_lab import (
    INPUTS_BUCKET,
    READS,
    READS_B,
    FakeLambdaContext,
    api_clients,
    assert_ledger_agrees_with_batch,
    aws_error,
    capture_calls,
    inject,
)

FASTQ = {"pipeline": "fastq-stats", "inputs": [READS]}


def test_retry_with_the_same_key_returns_the_same_job(lab):
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    first = lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})
    again = lab.submit(FASTQ, headers={"idempotency-key": "run-42"})  # header names are case-blind

    assert first.status == again.status == 202
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(submitted) == 1
    assert len(lab.batch_jobs()) == 1 and len(lab.job_records()) == 1
    assert lab.job_records()[0]["idempotency_key"] == "run-42"
    assert_ledger_agrees_with_batch(lab)


def test_replay_does_not_recheck_inputs(lab):
    lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})
    lab.s3.delete_object(Bucket=INPUTS_BUCKET, Key="runs/r1/sample-a.fastq.gz")

    again = lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})

    assert again.status == 202


def test_same_key_with_another_body_is_refused(lab):
    lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})

    other = lab.submit({**FASTQ, "inputs": [READS_B]}, headers={"Idempotency-Key": "run-42"})

    assert other.status == 422
    assert other.error["code"] == "idempotency_key_reused"
    assert other.error["details"]["field"] == "Idempotency-Key"
    assert len(lab.batch_jobs()) == 1 and len(lab.job_records()) == 1


def test_keys_belong_to_their_caller(lab):
    lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})

    bob = lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"}, caller="arn:aws:iam::123456789012:user/bob")

    assert bob.status == 202
    assert len(lab.batch_jobs()) == 2
    assert_ledger_agrees_with_batch(lab)


def test_without_a_key_every_post_is_a_new_job(lab):
    lab.submit(FASTQ)
    lab.submit(FASTQ)

    assert len(lab.batch_jobs()) == 2


def test_a_failed_attempt_can_be_retried_with_the_same_key(lab):
    inject(api_clients().batch, "SubmitJob", [aws_error("ThrottlingException", 429)] * 4)

    failed = lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})
    retried = lab.submit(FASTQ, headers={"Idempotency-Key": "run-42"})

    assert failed.status == 503
    assert retried.status == 202
    assert retried.body["job_id"] != failed.error["details"]["job_id"]
    statuses = sorted(r["status"] for r in lab.job_records())
    assert statuses == ["FAILED", "SUBMITTED"]
    assert len(lab.batch_jobs()) == 1
    assert_ledger_agrees_with_batch(lab)


def test_a_concurrent_retry_is_told_to_wait(lab):
    """A retry arriving while the first request is still submitting gets 409 + Retry-After."""
    from labbatch_api import handler as job_api
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
    from labbatch_api.job_models import SubmitJobRequest

    request = SubmitJobRequest.model_validate(FASTQ)
    submission = {"caller": "arn:aws:iam::123456789012:user/alice", "key": "run-42", "request": request.model_dump(mode="json")}
    seen = []

    def retry_meanwhile(**_):
        with pytest.raises(IdempotencyAlreadyInProgressError):
            job_api.runtime().submit_once(submission=submission, request=request)
        seen.append(True)

    job_api.runtime().idempotency_config.register_lambda_context(FakeLambdaContext())
    api_clients().batch.meta.events.register_first("before-send.batch.SubmitJob", retry_meanwhile)
    job_api.runtime().submit_once(submission=submission, request=request)
    assert seen == [True]

    answer = job_api._idempotency_in_progress(IdempotencyAlreadyInProgressError())
    assert answer.status_code == 409
    assert answer.headers["Retry-After"] == "2"
