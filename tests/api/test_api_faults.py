"""Throttling and failures of AWS under the API: retried with backoff, then 503 + Retry-After,
and the ledger and Batch agree on what happened."""

from __future__ import annotations

from tests.api_lab import (
    READS,
    READS_B,
    REFERENCE,
    api_clients,
    assert_ledger_agrees_with_batch,
    aws_error,
    inject,
)

FASTQ = {"pipeline": "fastq-stats", "inputs": [READS]}
THROTTLED = aws_error("ThrottlingException", 429)
MAX_ATTEMPTS = 4  # api_clients.MAX_ATTEMPTS


def test_throttled_submit_is_retried_and_succeeds(lab):
    attempts = inject(api_clients().batch, "SubmitJob", [THROTTLED, THROTTLED])

    answer = lab.submit(FASTQ)

    assert answer.status == 202
    assert attempts[0] == 3
    assert len(lab.batch_jobs()) == 1
    assert lab.job_records()[0]["status"] == "SUBMITTED"
    assert_ledger_agrees_with_batch(lab)


def test_throttled_past_retries_is_503_and_the_ledger_says_so(lab):
    attempts = inject(api_clients().batch, "SubmitJob", [THROTTLED] * MAX_ATTEMPTS)

    answer = lab.submit(FASTQ)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.error["code"] == "aws_unavailable"
    assert attempts[0] == MAX_ATTEMPTS
    (record,) = lab.job_records()
    assert record["job_id"] == answer.error["details"]["job_id"]
    assert record["status"] == "FAILED"
    assert record["submit_error"] == {
        "code": "ThrottlingException",
        "message": "injected",
        "outcome": "not_submitted",
    }
    assert f"after {MAX_ATTEMPTS} attempts" in record["status_reason"]
    assert "batch_job_id" not in record
    assert lab.batch_jobs() == []
    assert_ledger_agrees_with_batch(lab)
    # The caller can read what happened.
    job = lab.call("GET", f"/jobs/{record['job_id']}").body
    assert job["status"] == "FAILED" and job["submit_error"]["outcome"] == "not_submitted"


def test_batch_5xx_past_retries_leaves_an_unknown_outcome_the_updater_can_adopt(lab):
    inject(api_clients().batch, "SubmitJob", [aws_error("ServerException", 500)] * MAX_ATTEMPTS)

    answer = lab.submit(FASTQ)

    assert answer.status == 503
    (record,) = lab.job_records()
    assert record["status"] == "FAILED"
    assert record["submit_error"]["outcome"] == "unknown"
    assert record["status_reason"].startswith("Outcome unknown")


def test_batch_refusal_is_502_with_a_failed_record(lab):
    attempts = inject(api_clients().batch, "SubmitJob", [aws_error("ClientException", 400, message="JobQueue not found")])

    answer = lab.submit(FASTQ)

    assert answer.status == 502
    assert answer.error["code"] == "batch_rejected"
    assert attempts[0] == 1  # not retried: asking again would not help
    (record,) = lab.job_records()
    assert record["status"] == "FAILED" and "JobQueue not found" in record["status_reason"]
    assert lab.batch_jobs() == []


def test_ledger_throttled_before_submit_is_503_and_nothing_is_submitted(lab):
    throttled = aws_error("ProvisionedThroughputExceededException", 400, protocol="json")
    attempts = inject(api_clients().dynamodb, "PutItem", [throttled] * MAX_ATTEMPTS)

    answer = lab.submit(FASTQ)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert attempts[0] == MAX_ATTEMPTS
    lab.assert_nothing_created()


def test_ledger_throttled_after_submit_still_answers_202_and_events_catch_up(lab):
    throttled = aws_error("ThrottlingException", 400, protocol="json")
    inject(api_clients().dynamodb, "UpdateItem", [throttled] * MAX_ATTEMPTS)

    answer = lab.submit(FASTQ)

    assert answer.status == 202
    (record,) = lab.job_records()
    assert record["status"] == "PENDING_SUBMIT" and "batch_job_id" not in record
    (batch_job,) = lab.batch_jobs()
    lab.deliver({"detail-type": "Batch Job State Change", "source": "aws.batch", "detail": batch_job})
    (record,) = lab.job_records()
    assert record["batch_job_id"] == answer.body["batch_job_id"]
    assert record["status"] == "SUCCEEDED"
    assert_ledger_agrees_with_batch(lab)


def test_s3_throttled_while_checking_inputs_is_503_and_nothing_is_created(lab):
    inject(api_clients().s3, "HeadObject", [aws_error("SlowDown", 503, protocol="head")] * MAX_ATTEMPTS)

    answer = lab.submit(FASTQ)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    lab.assert_nothing_created()


def test_sample_list_write_failing_fails_the_record_and_submits_nothing(lab):
    inject(api_clients().s3, "PutObject", [aws_error("SlowDown", 503, protocol="head")] * MAX_ATTEMPTS)
    samples = [{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS_B]}]

    answer = lab.submit({"pipeline": "align", "parameters": {"reference": REFERENCE}, "samples": samples})

    assert answer.status == 503
    (record,) = lab.job_records()
    assert record["status"] == "FAILED" and record["submit_error"]["outcome"] == "not_submitted"
    assert "sample list" in record["status_reason"]
    assert lab.batch_jobs() == []
    assert_ledger_agrees_with_batch(lab)


def test_reads_throttled_past_retries_are_503(lab):
    job_id = lab.submit(FASTQ).body["job_id"]
    throttled = aws_error("ThrottlingException", 400, protocol="json")
    inject(api_clients().dynamodb, "GetItem", [throttled] * MAX_ATTEMPTS)

    answer = lab.call("GET", f"/jobs/{job_id}")

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.error["code"] == "aws_unavailable"


def test_idempotency_store_throttled_is_503(lab):
    throttled = aws_error("ThrottlingException", 400, protocol="json")
    inject(api_clients().dynamodb, "PutItem", [throttled] * MAX_ATTEMPTS)

    answer = lab.submit(FASTQ, headers={"Idempotency-Key": "k"})

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    lab.assert_nothing_created()


def test_clients_retry_in_standard_mode(lab):
    config = api_clients().batch.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}
