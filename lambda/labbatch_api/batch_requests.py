"""What the API asks of AWS Batch: the SubmitJob request, and cancel vs terminate.

The environment every job's runner gets is labbatch_contract.runner_env (the whole table is in
containers/runner/README.md); the request's shape is labbatch_contract.batch_submit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from labbatch_api.errors import refused
from labbatch_api.admission import AdmittedJob
from labbatch_contract import batch_submit, runner_env

# SubmitJob bodies are capped at 30 KiB; keep a margin for what botocore adds around ours.
MAX_SUBMIT_BODY_BYTES = 28 * 1024
MAX_JOB_NAME_CHARS = 128
# Batch cancels jobs that have not started; a job already STARTING or RUNNING must be terminated.
CANCELLABLE_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})

_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def batch_job_name(requested: str | None, pipeline_name: str) -> str:
    """Batch's rules: letters, digits, hyphens and underscores, up to 128, starting with a
    letter or digit (what the API itself and moto enforce)."""
    for candidate in (requested, pipeline_name):
        if candidate:
            name = _NOT_NAME_CHARS.sub("-", candidate).lstrip("-_")[:MAX_JOB_NAME_CHARS]
            if len(name) >= 2:
                return name
    return "labbatch-job"


def submit_job_request(
    job: AdmittedJob, *, lab: str, job_id: str, job_name: str, job_output_prefix: str, samples_uri: str | None
) -> dict[str, Any]:
    container_output = job_output_prefix + (f"{job.single_sample}/" if job.single_sample else "")
    environment = {
        runner_env.JOB_ID: job_id,
        runner_env.INPUTS: json.dumps(job.inputs, separators=(",", ":")),
        runner_env.PARAMETERS: json.dumps(job.parameters, separators=(",", ":"), sort_keys=True),
        runner_env.OUTPUT_PREFIX: container_output,
    }
    if job.shared_inputs:
        environment[runner_env.SHARED_INPUTS] = json.dumps(job.shared_inputs, separators=(",", ":"))
    if samples_uri is not None:
        environment[runner_env.SAMPLES_URI] = samples_uri
    if job.gpus:
        environment[runner_env.GPUS] = str(job.gpus)
    request = batch_submit.submit_job_request(
        job_name=job_name, job_queue=job.job_queue, job_definition=job.pipeline.job_definition,
        environment=environment, vcpus=job.vcpus, memory_mib=job.memory_mib, gpus=job.gpus, lab=lab,
        array_size=len(job.array_samples) if job.array_samples is not None else None)
    size = len(json.dumps(request).encode())
    if size > MAX_SUBMIT_BODY_BYTES:
        raise refused(
            "too_large_for_batch",
            f"inputs: the inputs and parameters make a {size:,}-byte Batch request; AWS Batch takes at most "
            f"{MAX_SUBMIT_BODY_BYTES:,} here. Use fewer or shorter inputs, or give them as samples "
            "(sample lists go to S3, not into the request).",
            field="inputs",
            request_bytes=size,
            limit_bytes=MAX_SUBMIT_BODY_BYTES,
        )
    return request


def stop_job(batch_client, batch_job_id: str, live_status: str, reason: str) -> str:
    """Cancel a job that has not started, terminate one that has; returns which was done."""
    if live_status in CANCELLABLE_STATUSES:
        batch_client.cancel_job(jobId=batch_job_id, reason=reason)
        return "cancel"
    batch_client.terminate_job(jobId=batch_job_id, reason=reason)
    return "terminate"
