"""Submitting an admitted job: ledger first, then Batch, then the ledger again.

The order is what makes failures safe. The PENDING_SUBMIT record exists before Batch is
called, so no Batch job can exist without a record; a failed call turns the record into
FAILED with the reason; and if completing the record fails after Batch accepted the job,
the status updater completes it from Batch's own events (it finds records by the
LABBATCH_JOB_ID every job carries in its environment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from labbatch_api.admission import AdmittedJob
from labbatch_api.clients import ApiClients
from labbatch_api.errors import ApiError, unavailable
from labbatch_contract.settings import LabSettings
from labbatch_api.aws_faults import attempts_made, error_code, is_retryable, request_may_have_landed
from labbatch_api.batch_requests import batch_job_name, submit_job_request
from labbatch_contract.ids import new_job_id, utc_timestamp
from labbatch_contract.ledger import new_job_record
from labbatch_contract.names import output_prefix, samples_key
from labbatch_api.ledger import JobLedger

# Same service as handler.py: a child logger shares its parent's keys (job_id, correlation id).
logger = Logger(service="labbatch-api", child=True)


def submit(
    job: AdmittedJob,
    *,
    caller: str,
    idempotency_key: str | None,
    settings: LabSettings,
    clients: ApiClients,
    ledger: JobLedger,
) -> dict[str, Any]:
    job_id = new_job_id()
    created_at = utc_timestamp()
    prefix = output_prefix(settings.buckets.results, job_id)
    samples_uri = f"s3://{settings.buckets.inputs}/{samples_key(job_id)}" if job.array_samples else None
    name = batch_job_name(job.name, job.pipeline_name)
    # Built (and size-checked) before anything is written: a refusal leaves no trace.
    request = submit_job_request(
        job, lab=settings.lab, job_id=job_id, job_name=name, job_output_prefix=prefix, samples_uri=samples_uri
    )
    array_size = len(job.array_samples) if job.array_samples else None
    ledger.create_pending(new_job_record(
        job_id=job_id,
        created_at=created_at,
        lab=settings.lab,
        pipeline=job.pipeline_name,
        queue=job.queue,
        job_queue=job.job_queue,
        job_definition=job.pipeline.job_definition,
        vcpus=job.vcpus,
        memory_mib=job.memory_mib,
        gpus=job.gpus or None,
        pool=job.pool,
        output_prefix=prefix,
        name=job.name,
        batch_job_name=name,
        submitted_by=caller,
        idempotency_key=idempotency_key,
        inputs=job.inputs,
        shared_inputs=job.shared_inputs or None,
        parameters=job.parameters,
        samples_uri=samples_uri,
        array_size=array_size,
        # Children nobody has heard from yet count as SUBMITTED (see lambda/labbatch_status).
        children={"SUBMITTED": array_size} if array_size else None,
        input_bytes=job.input_bytes,
        scratch_needed_bytes=job.scratch_needed_bytes,
    ))
    logger.append_keys(job_id=job_id)
    document = None
    if job.array_samples:
        document = StagedDocument(
            "writing the sample list to S3", settings.buckets.inputs, samples_key(job_id),
            json.dumps([s.as_json() for s in job.array_samples], separators=(",", ":")).encode())
    batch_job_id = submit_recorded(job_id, request, ledger=ledger, clients=clients, document=document)
    logger.info("Submitted to AWS Batch", extra={"batch_job_id": batch_job_id, "array_size": array_size})

    return {
        "job_id": job_id,
        "status": "SUBMITTED",
        "output_prefix": prefix,
        "pipeline": job.pipeline_name,
        "queue": job.queue,
        "name": job.name,
        "batch_job_id": batch_job_id,
        "created_at": created_at,
        "array_size": array_size,
        "samples_uri": samples_uri,
    }


@dataclass(frozen=True)
class StagedDocument:
    """What the job reads from S3 and its request only names (a sample list, a TES task document)."""

    step: str  # how a failure to write it is told: "writing the sample list to S3"
    bucket: str
    key: str
    body: bytes


def submit_recorded(job_id: str, request: dict[str, Any], *, ledger: JobLedger, clients: ApiClients,
                    document: StagedDocument | None = None) -> str:
    """The one way a recorded job reaches AWS Batch, for jobs and TES tasks alike: its document to
    S3 (after the record, so a failure is on the ledger and no object is left that no record
    names), SubmitJob, then the record completed. Returns Batch's job id; a failure is recorded
    on the ledger and raised as the answer to give."""
    if document is not None:
        try:
            clients.s3.put_object(Bucket=document.bucket, Key=document.key, Body=document.body,
                                  ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise submit_failed(ledger, job_id, exc, step=document.step, landed=False)
    try:
        answer = clients.batch.submit_job(**request)
    except (ClientError, BotoCoreError) as exc:
        raise submit_failed(ledger, job_id, exc, step="AWS Batch SubmitJob", landed=request_may_have_landed(exc))
    batch_job_id = answer["jobId"]
    try:
        ledger.mark_submitted(job_id, batch_job_id, utc_timestamp())
    except (ClientError, BotoCoreError):
        # The job is real, so the answer is still a success; the status updater will catch up.
        logger.exception("Submitted, but the ledger could not be completed", extra={"batch_job_id": batch_job_id})
    return batch_job_id


def submit_failed(ledger: JobLedger, job_id: str, exc: BaseException, *, step: str, landed: bool) -> ApiError:
    """Record the failure on the ledger and choose the answer."""
    code = error_code(exc)
    attempts = attempts_made(exc)
    tried = f" after {attempts} attempts" if attempts and attempts > 1 else ""
    detail = exc.response.get("Error", {}).get("Message", "") if isinstance(exc, ClientError) else str(exc)
    if landed:
        reason = (
            f"Outcome unknown: {step} failed{tried} with {code} after the request was sent; "
            "if AWS Batch created the job, its events will update this record"
        )
    else:
        reason = f"Not submitted: {step} failed{tried} with {code}: {detail}".rstrip(": ")
    submit_error = {"code": code, "message": detail[:1000], "outcome": "unknown" if landed else "not_submitted"}
    logger.error("Submission failed", extra={"step": step, "error_code": code, "attempts": attempts, "landed": landed})
    try:
        ledger.mark_submit_failed(job_id, reason, submit_error, utc_timestamp())
    except (ClientError, BotoCoreError):
        logger.exception("Could not record the failed submission; the record stays PENDING_SUBMIT")

    if is_retryable(exc):
        return unavailable("aws_unavailable", f"{reason}. Try again later.", job_id=job_id, aws_error=code)
    return ApiError(
        HTTPStatus.BAD_GATEWAY,
        "batch_rejected" if step.startswith("AWS Batch") else "aws_rejected",
        reason,
        details={"job_id": job_id, "aws_error": code},
    )
