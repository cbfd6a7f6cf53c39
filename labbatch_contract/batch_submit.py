"""The SubmitJob request LabBatch makes for a job: the API's first submission and every
recovery the status updater makes go through `submit_job_request`."""

from __future__ import annotations

from typing import Any, Mapping

from labbatch_contract.names import LAB_TAG


def submit_job_request(*, job_name: str, job_queue: str, job_definition: str, environment: Mapping[str, str],
                       vcpus: int, memory_mib: int, lab: str, array_size: int | None = None,
                       gpus: int = 0) -> dict[str, Any]:
    """Everything but the job definition's own settings, as container overrides.

    Jobs carry their lab's tag: the API's IAM role may cancel or terminate only jobs with it.
    """
    request: dict[str, Any] = {
        "jobName": job_name,
        "jobQueue": job_queue,
        "jobDefinition": job_definition,
        "containerOverrides": {
            "environment": [{"name": name, "value": value} for name, value in environment.items()],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(vcpus)},
                {"type": "MEMORY", "value": str(memory_mib)},
                *([{"type": "GPU", "value": str(gpus)}] if gpus else []),
            ],
        },
        "tags": {LAB_TAG: lab},
    }
    if array_size is not None:
        request["arrayProperties"] = {"size": array_size}
    return request
