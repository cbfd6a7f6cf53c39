"""AWS Batch's own words: the reasons it gives for how attempts end and why jobs wait, kept once.

Batch writes these in AWS; local mode's executor writes the same ones (labbatch/local/batch),
so that the status updater's failure classes (lambda/labbatch_status/failure_classes.py), the API's
`waiting` (lambda/labbatch_api/waiting.py), the queues' state time limits (labbatch/lab/batch_layout.py)
and `labbatch doctor` read both alike. Sources: the AWS Batch user guide (job timeouts, spot
retries, troubleshooting, job state time limits) and the reasons ECS puts on stopped tasks.
Change them only to follow Batch.
"""

from __future__ import annotations

import re

# Status reasons of an attempt or a job.
CONTAINER_EXITED = "Essential container in task exited"
TASK_FAILED_TO_START = "Task failed to start"
TIMEOUT = "Job attempt duration exceeded timeout"
ARRAY_CHILD_FAILED = "Array Child Job failed"
# A spot reclaim: "Host EC2 (instance i-...) terminated." (LabBatch's retry rule matches the prefix).
HOST_TERMINATED_PREFIX = "Host EC2"
_HOST_TERMINATED = re.compile(r"^Host EC2 \(instance [^)]*\) terminated\.?$")

# Container reasons (ECS's stopped-task reasons), by their first word.
OUT_OF_MEMORY_PREFIX = "OutOfMemoryError"
OUT_OF_MEMORY = OUT_OF_MEMORY_PREFIX + ": Container killed due to memory usage"
CANNOT_PULL_CONTAINER = "CannotPullContainerError"
CANNOT_START_CONTAINER = "CannotStartContainerError"
CANNOT_CREATE_CONTAINER = "CannotCreateContainerError"
# Could not start, pull or mount: the attempt never ran the job's command.
INFRASTRUCTURE_PREFIXES = (
    CANNOT_PULL_CONTAINER,
    CANNOT_START_CONTAINER,
    CANNOT_CREATE_CONTAINER,
    "CannotInspectContainerError",
    "ResourceInitializationError",
    TASK_FAILED_TO_START,
)

# RUNNABLE reasons: why a job waits; a queue's jobStateTimeLimitActions may act on the first three only.
JOB_RESOURCE_REQUIREMENT = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
COMPUTE_ENVIRONMENT_MAX_RESOURCE = "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
INSUFFICIENT_INSTANCE_CAPACITY = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
SERVICE_ROLE_PERMISSIONS = "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS"
ACTION_REQUIRED = "ACTION_REQUIRED"
# Reasons for a job no compute environment of its queue can ever place.
UNPLACEABLE = (JOB_RESOURCE_REQUIREMENT, COMPUTE_ENVIRONMENT_MAX_RESOURCE)
TIME_LIMIT_REASONS = (INSUFFICIENT_INSTANCE_CAPACITY, COMPUTE_ENVIRONMENT_MAX_RESOURCE, JOB_RESOURCE_REQUIREMENT)
# A job cancelled by a state time limit: its reason starts with the code's family.
TIME_LIMIT_PREFIXES = ("MISCONFIGURATION:", "CAPACITY:")
BLOCKED_BY_JOB_SIZE = (JOB_RESOURCE_REQUIREMENT + " - The job resource requirement "
                       "(vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the job queue.")
BLOCKED_BY_CE_MAX = (COMPUTE_ENVIRONMENT_MAX_RESOURCE + " - CE(s) associated with the job queue "
                     "cannot meet the CPU requirement of the job.")

# LabBatch's own reason for CancelJob/TerminateJob through the job API (lambda/labbatch_api/handler.py).
# DELETE records `cancel` on the record only after Batch answered, so the FAILED event can
# arrive first: the reason says it too.
API_CANCEL_PREFIX = "Cancelled through the LabBatch API"


def host_terminated(instance_id: str) -> str:
    """A spot reclaim, matched by LabBatch's retry rule `onStatusReason: "Host EC2*"`."""
    return f"{HOST_TERMINATED_PREFIX} (instance {instance_id}) terminated."


def is_host_terminated(reason: str | None) -> bool:
    return bool(reason) and _HOST_TERMINATED.match(reason.strip()) is not None


def api_cancel(caller: str) -> str:
    return f"{API_CANCEL_PREFIX} by {caller}"


def executable_not_found(executable: str) -> str:
    return (f"{CANNOT_START_CONTAINER}: Error response from daemon: failed to create task for container: "
            f"exec: executable file not found in $PATH: {executable}")


def cannot_start(executable: str, problem: str) -> str:
    return (f"{CANNOT_START_CONTAINER}: Error response from daemon: failed to create task for container: "
            f"exec: {problem}: {executable}")


def container_error(kind: str, detail: str) -> str:
    """A container that could not be created or started (`kind`: CANNOT_CREATE_CONTAINER or
    CANNOT_START_CONTAINER), with what the engine said."""
    return f"{kind}: {detail}"


def no_private_tmp(why: str) -> str:
    """A TES task on the host executor that cannot have a /tmp of its own (private_tmp.py). In
    Batch's words for a task that could not start, so that it is a SYSTEM_ERROR."""
    return (f"{CANNOT_START_CONTAINER}: a TES task on the host executor runs in a private mount namespace "
            f"with a /tmp of its own, and none could be made here: {why}; run local mode with a container "
            "engine (without --no-containers) to run TES tasks")


def cancelled_by_time_limit(reason_code: str, max_time_seconds: int) -> str:
    # Plain words for people; the code in front is Batch's, for whoever classifies it.
    return (f"{reason_code} - cancelled by the job queue's state time limit: RUNNABLE for more than "
            f"{max_time_seconds} s without a compute environment able to run it")
