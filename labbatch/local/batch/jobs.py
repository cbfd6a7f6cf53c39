"""A job as the executor holds it, and the shapes Batch reports it in (JobDetail, JobSummary).

Jobs are mutated only under the executor's lock; `detail()` and `summary()` are snapshots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labbatch_contract.batch_container import Container
from labbatch.local.batch.models import Arns, JobDefinition
from labbatch.local.batch.retry import RetryStrategy

if TYPE_CHECKING:
    from labbatch.local.batch.attempt import RunningAttempt

STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
QUEUED = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED"})


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class AttemptRecord:
    started_at: int | None
    stopped_at: int
    status_reason: str
    exit_code: int | None
    reason: str | None
    log_stream_name: str | None
    task_arn: str | None

    def detail(self) -> dict[str, Any]:
        container: dict[str, Any] = {}
        for key, value in (("exitCode", self.exit_code), ("reason", self.reason),
                           ("logStreamName", self.log_stream_name), ("taskArn", self.task_arn)):
            if value is not None:
                container[key] = value
        shape: dict[str, Any] = {"container": container, "stoppedAt": self.stopped_at,
                                 "statusReason": self.status_reason}
        if self.started_at is not None:
            shape["startedAt"] = self.started_at
        return shape


@dataclass
class Job:
    job_id: str
    job_arn: str
    name: str
    queue_name: str
    queue_arn: str
    definition: JobDefinition
    definition_arn: str
    command: list[str]
    environment: dict[str, str]  # the definition's, then the overrides': what DescribeJobs shows
    vcpus: int
    memory_mib: int
    retry: RetryStrategy
    timeout_seconds: int | None
    parameters: dict[str, str]
    tags: dict[str, str]
    container: Container | None = None  # what the agent starts (None: jobs made without SubmitJob's checks)
    propagate_tags: bool = False
    created_at: int = field(default_factory=now_ms)
    status: str = "SUBMITTED"
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    array_size: int | None = None  # parents only
    array_index: int | None = None  # children only
    parent: Job | None = None
    children: list[Job] = field(default_factory=list)
    child_counts: dict[str, int] = field(default_factory=dict)
    child_counts_updated_at: int | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    is_cancelled: bool = False
    is_terminated: bool = False
    runnable_since: float = 0.0  # monotonic; how long it has waited, for state time limits
    # The attempt being placed or run, and where.
    running: RunningAttempt | None = None
    compute_environment: str | None = None
    log_stream_name: str | None = None
    task_arn: str | None = None
    attempt_started_at: int | None = None
    stop_requested: tuple[str, str] | None = None  # (cause, reason) asked for while STARTING

    @property
    def is_array_parent(self) -> bool:
        return self.array_size is not None

    def detail(self, arns: Arns) -> dict[str, Any]:
        """DescribeJobs' JobDetail."""
        shape: dict[str, Any] = {
            "jobArn": self.job_arn,
            "jobName": self.name,
            "jobId": self.job_id,
            "jobQueue": self.queue_arn,
            "status": self.status,
            "attempts": [attempt.detail() for attempt in self.attempts],
            "createdAt": self.created_at,
            "retryStrategy": self.retry.to_batch(),
            "dependsOn": [],
            "jobDefinition": self.definition_arn,
            "parameters": dict(self.parameters),
            "container": self._container(),
            "tags": dict(self.tags),
            "propagateTags": self.propagate_tags,
            "platformCapabilities": ["EC2"],
            "isCancelled": self.is_cancelled,
            "isTerminated": self.is_terminated,
        }
        if self.status_reason is not None:
            shape["statusReason"] = self.status_reason
        if self.started_at is not None:
            shape["startedAt"] = self.started_at
        if self.stopped_at is not None:
            shape["stoppedAt"] = self.stopped_at
        if self.timeout_seconds is not None:
            shape["timeout"] = {"attemptDurationSeconds": self.timeout_seconds}
        array = self._array_properties()
        if array is not None:
            shape["arrayProperties"] = array
        return shape

    def summary(self) -> dict[str, Any]:
        """ListJobs' JobSummary."""
        shape: dict[str, Any] = {
            "jobArn": self.job_arn,
            "jobId": self.job_id,
            "jobName": self.name,
            "createdAt": self.created_at,
            "status": self.status,
            "jobDefinition": self.definition_arn,
            "isCancelled": self.is_cancelled,
            "isTerminated": self.is_terminated,
        }
        for key, value in (("statusReason", self.status_reason), ("startedAt", self.started_at),
                           ("stoppedAt", self.stopped_at)):
            if value is not None:
                shape[key] = value
        last = self.attempts[-1] if self.attempts else None
        if last is not None:
            container = {key: value for key, value in (("exitCode", last.exit_code), ("reason", last.reason))
                         if value is not None}
            shape["container"] = container
        array = self._array_properties()
        if array is not None:
            shape["arrayProperties"] = array
        return shape

    def _container(self) -> dict[str, Any]:
        container: dict[str, Any] = {
            "image": self.definition.image,
            "vcpus": self.vcpus,
            "memory": self.memory_mib,
            "command": list(self.command),
            "environment": [{"name": name, "value": value} for name, value in self.environment.items()],
            "resourceRequirements": [{"type": "VCPU", "value": str(self.vcpus)},
                                     {"type": "MEMORY", "value": str(self.memory_mib)}],
            "volumes": [],
            "mountPoints": [],
            "ulimits": [],
            "networkInterfaces": [],
            "secrets": [],
            "logConfiguration": {"logDriver": "awslogs", "secretOptions": [], "options": log_options(self.definition)},
        }
        last = self.attempts[-1] if self.attempts else None
        if self.running is not None or last is None:
            current = {"logStreamName": self.log_stream_name, "taskArn": self.task_arn}
        else:
            current = {"exitCode": last.exit_code, "reason": last.reason,
                       "logStreamName": last.log_stream_name, "taskArn": last.task_arn}
        container.update({key: value for key, value in current.items() if value is not None})
        return container

    def _array_properties(self) -> dict[str, Any] | None:
        if self.is_array_parent:
            shape: dict[str, Any] = {"statusSummary": {status: self.child_counts.get(status, 0) for status in STATUSES},
                                     "size": self.array_size}
            if self.child_counts_updated_at is not None:
                shape["statusSummaryLastUpdatedAt"] = self.child_counts_updated_at
            return shape
        if self.array_index is not None:
            return {"index": self.array_index}
        return None


def log_options(definition) -> dict[str, str]:
    """The job definition's awslogs options, as Batch reports them in a job's container detail."""
    options = {"awslogs-stream-prefix": definition.log_stream_prefix or definition.name}
    if definition.log_group:
        options["awslogs-group"] = definition.log_group
    return options
