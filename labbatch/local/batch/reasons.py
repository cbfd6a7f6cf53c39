"""Batch's own words for how attempts end, so that failure classes read the same locally and in AWS.

Sources: the AWS Batch user guide (job timeouts, spot retries, troubleshooting) and the
reasons ECS puts on stopped tasks. Whoever classifies failures (the `failure` field) matches
these strings, so change them only to follow Batch.
"""

from __future__ import annotations

CONTAINER_EXITED = "Essential container in task exited"
TASK_FAILED_TO_START = "Task failed to start"
TIMEOUT = "Job attempt duration exceeded timeout"
OUT_OF_MEMORY = "OutOfMemoryError: Container killed due to memory usage"
ARRAY_CHILD_FAILED = "Array Child Job failed"
# Batch's RUNNABLE reasons for a job no compute environment of its queue can ever place.
BLOCKED_BY_JOB_SIZE = ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement "
                       "(vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the job queue.")
BLOCKED_BY_CE_MAX = ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue "
                     "cannot meet the CPU requirement of the job.")


def host_terminated(instance_id: str) -> str:
    """A spot reclaim, matched by LabBatch's retry rule `onStatusReason: "Host EC2*"`."""
    return f"Host EC2 (instance {instance_id}) terminated."


def executable_not_found(executable: str) -> str:
    return ("CannotStartContainerError: Error response from daemon: failed to create task for container: "
            f"exec: executable file not found in $PATH: {executable}")


def cannot_start(executable: str, problem: str) -> str:
    return f"CannotStartContainerError: Error response from daemon: failed to create task for container: exec: {problem}: {executable}"


def no_private_tmp(why: str) -> str:
    """A TES task on the host executor that cannot have a /tmp of its own (private_tmp.py). In
    Batch's words for a task that could not start, so that it is a SYSTEM_ERROR."""
    return ("CannotStartContainerError: a TES task on the host executor runs in a private mount namespace "
            f"with a /tmp of its own, and none could be made here: {why}; run local mode with a container "
            "engine (without --no-containers) to run TES tasks")


def cancelled_by_time_limit(reason_code: str, max_time_seconds: int) -> str:
    # Plain words for people; the code in front is Batch's, for whoever classifies it.
    return (f"{reason_code} - cancelled by the job queue's state time limit: RUNNABLE for more than "
            f"{max_time_seconds} s without a compute environment able to run it")
