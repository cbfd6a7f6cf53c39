"""What the API asks of AWS Batch: the SubmitJob request, and cancel vs terminate.

The runner contract lives here: the environment every job container gets.
- LABBATCH_JOB_ID        the ledger's job id (the status updater finds records by it)
- LABBATCH_INPUTS        JSON array of s3:// URIs to stage in: the job's own inputs,
                         {input}/{inputs} (empty for an array job: each child's are its sample's)
- LABBATCH_SHARED_INPUTS JSON array of s3:// URIs every sample shares, {shared_input(s)};
                         absent when the request had none
- LABBATCH_PARAMETERS    JSON object, str -> str, complete (pipeline defaults applied)
- LABBATCH_OUTPUT_PREFIX s3:// URI ending in "/" where outputs go
- LABBATCH_SAMPLES_URI   array jobs only: the sample list, a JSON array of complete
                         {"name", "inputs", "parameters"} entries, one per child index;
                         a child writes under <LABBATCH_OUTPUT_PREFIX><name>/
"""

from __future__ import annotations

import json
import re
from typing import Any

from api_errors import refused
from admission import AdmittedJob

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


def output_prefix(results_bucket: str, job_id: str) -> str:
    return f"s3://{results_bucket}/jobs/{job_id}/"


def samples_key(job_id: str) -> str:
    return f"work/samples/{job_id}.json"


# Jobs carry their lab's tag: the handler's IAM role may cancel or terminate only jobs with it.
LAB_TAG = "labbatch:lab"


def submit_job_request(
    job: AdmittedJob, *, lab: str, job_id: str, job_name: str, job_output_prefix: str, samples_uri: str | None
) -> dict[str, Any]:
    container_output = job_output_prefix + (f"{job.single_sample}/" if job.single_sample else "")
    environment = {
        "LABBATCH_JOB_ID": job_id,
        "LABBATCH_INPUTS": json.dumps(job.inputs, separators=(",", ":")),
        "LABBATCH_PARAMETERS": json.dumps(job.parameters, separators=(",", ":"), sort_keys=True),
        "LABBATCH_OUTPUT_PREFIX": container_output,
    }
    if job.shared_inputs:
        environment["LABBATCH_SHARED_INPUTS"] = json.dumps(job.shared_inputs, separators=(",", ":"))
    if samples_uri is not None:
        environment["LABBATCH_SAMPLES_URI"] = samples_uri
    request: dict[str, Any] = {
        "jobName": job_name,
        "jobQueue": job.job_queue,
        "jobDefinition": job.pipeline.job_definition,
        "containerOverrides": {
            "environment": [{"name": name, "value": value} for name, value in environment.items()],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(job.vcpus)},
                {"type": "MEMORY", "value": str(job.memory_mib)},
            ],
        },
        "tags": {LAB_TAG: lab},
    }
    if job.array_samples is not None:
        request["arrayProperties"] = {"size": len(job.array_samples)}
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
