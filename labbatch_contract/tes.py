"""GA4GH TES tasks as LabBatch jobs: the rules the API, the status side and the runner share.

One task is one ledger record (a job record whose `pipeline` is `TES_PIPELINE`, with the task
document under `tes`) and one Batch job of the usual shape, whose job definition names the task's
image and is registered on demand (`job_definition_request`). The runner reads the task's
inputs, outputs and executors from `LABBATCH_TES_TASK` (`runner_task`), as JSON or, when large,
as an s3:// URI of that JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from labbatch_contract import job_layout, names, runner_env

# Where TES 1.1 lives on a lab's API. Clients on py-tes 0.4 (Snakemake's and Toil's plugins) and
# Nextflow's nf-ga4gh append /v1/tasks to the URL they are given: given the lab's own URL, that is
# /v1/..., which the API serves as the same routes (tes_api_path).
TES_BASE = "/ga4gh/tes/v1"
TES_ROOTS = ("/ga4gh/", "/v1/")


def tes_api_path(path: str) -> str | None:
    """The TES route a request path means, or None when it is no TES path. Never a path with dot
    segments or encoded dots and slashes: whatever normalises it later must not leave TES."""
    lowered = path.lower()
    if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered or "\\" in path \
            or any(part in (".", "..") for part in path.split("/")):
        return None
    if path == TES_BASE or path.startswith(TES_BASE + "/"):
        return path
    if path == "/v1/tasks/service-info":  # py-tes 0.4's service-info
        return TES_BASE + "/service-info"
    if path.startswith(TES_ROOTS[1]):
        return TES_BASE + path[len("/v1"):]
    return None


# Not a valid pipeline name (config.py: lowercase letters, digits, hyphens), so never a pipeline's.
TES_PIPELINE = "ga4gh:tes"
# The runner's task document goes to S3 above this many bytes (SubmitJob takes 30 KiB in all).
INLINE_TASK_LIMIT = 8 * 1024
# States LabBatch reports. Never PREEMPTED or PAUSED: Snakemake's TES executor aborts on them,
# and a spot reclaim is retried by Batch (or recovered by LabBatch) anyway.
STATES = ("QUEUED", "INITIALIZING", "RUNNING", "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED",
          "CANCELING")
FINAL_STATES = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"})
_BATCH_TO_TES = {
    "PENDING_SUBMIT": "QUEUED", "SUBMITTED": "QUEUED", "PENDING": "QUEUED", "RUNNABLE": "QUEUED",
    "STARTING": "INITIALIZING", "RUNNING": "RUNNING", "SUCCEEDED": "COMPLETE",
}


def task_state(record: Mapping[str, Any]) -> str:
    """The TES state of a ledger record (the last one of its recovery chain).

    FAILED splits by the status updater's failure class: the tool's own non-zero exit
    (`application`) is EXECUTOR_ERROR, a cancel is CANCELED, everything LabBatch or AWS caused
    is SYSTEM_ERROR. A cancel requested of a job that has not ended yet is CANCELING.
    """
    status = record.get("status")
    if status == "FAILED":
        failure = record.get("failure")
        if failure == "application":
            return "EXECUTOR_ERROR"
        if failure == "cancelled" or record.get("cancel"):
            return "CANCELED"
        return "SYSTEM_ERROR"
    if record.get("cancel") and status != "SUCCEEDED":
        return "CANCELING"
    return _BATCH_TO_TES.get(str(status), "QUEUED")


def runner_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """What the runner needs of a (validated) task: inputs, outputs, executors, nothing else."""
    return {
        "inputs": [{k: i[k] for k in ("path", "url", "content", "type") if i.get(k) is not None}
                   for i in task.get("inputs") or []],
        "outputs": [{k: o[k] for k in ("path", "url", "type", "path_prefix") if o.get(k) is not None}
                    for o in task.get("outputs") or []],
        "executors": [{k: e[k] for k in ("command", "workdir", "env", "stdin", "stdout", "stderr", "ignore_error")
                       if e.get(k) is not None} for e in task.get("executors") or []],
        "volumes": list(task.get("volumes") or []),
    }


def has_content(task: Mapping[str, Any]) -> bool:
    return any(i.get("content") is not None for i in task.get("inputs") or [])


def without_content(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task as the ledger keeps it: inputs' `content` (which may hold secrets) left out."""
    return {**task, "inputs": [{k: v for k, v in i.items() if k != "content"} for i in task.get("inputs") or []]} \
        if task.get("inputs") else dict(task)


def encode_runner_task(task: Mapping[str, Any]) -> str:
    return json.dumps(runner_task(task), separators=(",", ":"), sort_keys=True)


def job_definition_request(*, lab: str, image: str, job_role_arn: str, execution_role_arn: str, log_group: str,
                           architecture: str, timeout_minutes: int, attempts: int) -> dict[str, Any]:
    """RegisterJobDefinition for a task image: the pipelines' shape (labbatch/lab/batch_layout.py), the
    runner mounted and started with no tool argv (the task's executors come through the
    environment). The name carries a hash of everything else, so identical shapes share one."""
    container: dict[str, Any] = {
        "image": image,
        "command": list(job_layout.runner_launch(architecture)),
        "environment": [{"name": runner_env.SCRATCH_DIR, "value": job_layout.SCRATCH_MOUNT},
                        {"name": runner_env.LAB, "value": lab},
                        {"name": runner_env.PIPELINE, "value": TES_PIPELINE}],
        # Overridden by every SubmitJob with the task's own resources.
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
        "volumes": [{"name": name, "host": {"sourcePath": host}} for name, host, _, _ in job_layout.MOUNTS],
        "mountPoints": [{"sourceVolume": name, "containerPath": path, "readOnly": read_only}
                        for name, _, path, read_only in job_layout.MOUNTS],
        "logConfiguration": {"logDriver": "awslogs",
                             "options": {"awslogs-group": log_group, "awslogs-stream-prefix": "tes"}},
    }
    if job_role_arn:
        container["jobRoleArn"] = job_role_arn
    if execution_role_arn:
        container["executionRoleArn"] = execution_role_arn
    request: dict[str, Any] = {
        "type": "container",
        "platformCapabilities": ["EC2"],
        "containerProperties": container,
        "retryStrategy": {"attempts": attempts, "evaluateOnExit": [dict(r) for r in job_layout.RETRY_RULES]},
        "timeout": {"attemptDurationSeconds": timeout_minutes * 60},
        "propagateTags": True,
        "tags": {names.LAB_TAG: lab},
    }
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:20]
    return {"jobDefinitionName": names.tes_job_definition_prefix(lab) + digest, **request}


def image_allowed(image: str, allowed_prefixes: list[str] | tuple[str, ...]) -> bool:
    return any(image.startswith(prefix) for prefix in allowed_prefixes)


def task_key(job_id: str) -> str:
    """Where a large runner task document goes, in the inputs bucket (under work/, which expires)."""
    return f"work/tes/{job_id}.json"
