"""What local mode registers with its Batch executor: compute environments, queues, job definitions.

These mirror the Batch resources the Compute stack creates (same names, same order, same retry
strategy), so the API handler finds exactly what it would find in AWS. The launcher builds them
from the lab config; every class also accepts a plain dict with the same field names (see
`coerce`), which keeps the launcher free of imports beyond `LocalBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping, TypeVar

from labbatch.local.batch import retry as batch_retry
from labbatch_contract import batch_reasons

ComputeKind = Literal["spot", "on-demand"]
DEFAULT_ACCOUNT = "123456789012"  # moto's default account, so ARNs agree with the emulator's
DEFAULT_REGION = "us-east-1"
# The only RUNNABLE reasons Batch lets a queue's jobStateTimeLimitActions act on.
TIME_LIMIT_REASONS = batch_reasons.TIME_LIMIT_REASONS


@dataclass(frozen=True)
class ComputeEnvironment:
    """A managed EC2 compute environment; locally a share of this machine.

    `max_vcpus` caps what this environment may run at once (Batch's maxvCpus); None means only
    the machine's own cap applies. `instance_types` is reported by DescribeComputeEnvironments.
    """

    name: str
    kind: ComputeKind
    max_vcpus: int | None = None
    instance_types: tuple[str, ...] = ("optimal",)
    enabled: bool = True
    # What DescribeComputeEnvironments reports; None: Batch's default for the kind.
    allocation_strategy: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("spot", "on-demand"):
            raise ValueError(f"compute environment {self.name!r}: kind {self.kind!r} (allowed: spot, on-demand)")
        if self.max_vcpus is not None and self.max_vcpus < 0:
            raise ValueError(f"compute environment {self.name!r}: max_vcpus must not be negative")
        object.__setattr__(self, "instance_types", tuple(self.instance_types))


@dataclass(frozen=True)
class StateTimeLimitAction:
    """Batch's jobStateTimeLimitActions entry: cancel a job blocked in RUNNABLE for `reason`."""

    reason: str
    max_time_seconds: int
    action: Literal["CANCEL"] = "CANCEL"
    state: Literal["RUNNABLE"] = "RUNNABLE"

    def __post_init__(self) -> None:
        if self.reason not in TIME_LIMIT_REASONS:
            raise ValueError(f"state time limit reason {self.reason!r} (allowed: {', '.join(TIME_LIMIT_REASONS)})")
        if self.max_time_seconds < 1:
            raise ValueError("state time limit max_time_seconds must be at least 1")


@dataclass(frozen=True)
class JobQueue:
    """`compute_environments` in placement order: the spot queue lists spot, then on-demand."""

    name: str
    priority: int
    compute_environments: tuple[str, ...]
    state_time_limit_actions: tuple[StateTimeLimitAction, ...] = ()
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.compute_environments:
            raise ValueError(f"job queue {self.name!r}: needs at least one compute environment")
        object.__setattr__(self, "compute_environments", tuple(self.compute_environments))
        object.__setattr__(self, "state_time_limit_actions",
                           tuple(coerce(StateTimeLimitAction, a) for a in self.state_time_limit_actions))


@dataclass(frozen=True)
class JobDefinition:
    """A container job definition, reduced to what a local run needs.

    `environment` is the definition's own variables (the image's are the host's, see
    `batch_attempt.base_environment`). `timeout_seconds` is not held to Batch's 60 s floor
    here, so tests can time out quickly; SubmitJob overrides are. `retry` takes a
    `RetryStrategy` or Batch's own dict shape (`{"attempts", "evaluateOnExit"}`).
    `log_stream_prefix` is awslogs-stream-prefix; Batch's default is the definition's name.
    """

    name: str
    command: tuple[str, ...]
    revision: int = 1
    image: str = "local"
    environment: Mapping[str, str] = field(default_factory=dict)
    vcpus: int = 1
    memory_mib: int = 2048
    timeout_seconds: int | None = None
    retry: batch_retry.RetryStrategy | Mapping[str, Any] = field(default_factory=batch_retry.RetryStrategy)
    parameters: Mapping[str, str] = field(default_factory=dict)
    log_stream_prefix: str | None = None
    log_group: str | None = None  # awslogs-group; Batch's default group when None
    gpus: int = 0  # the `GPU` resource requirement; only an engine with an NVIDIA runtime runs these
    # The rest of containerProperties, in Batch's API spelling (volumes, mountPoints, ulimits,
    # user, linuxParameters, readonlyRootFilesystem): what the container is started with
    # (labbatch_contract.batch_container), as the ECS agent starts it from a deployed definition.
    extra_properties: Mapping[str, Any] = field(default_factory=dict)

    def container_properties(self) -> dict[str, Any]:
        return {"image": self.image, "command": list(self.command),
                "environment": [{"name": k, "value": v} for k, v in self.environment.items()],
                "resourceRequirements": [{"type": "VCPU", "value": str(self.vcpus)},
                                         {"type": "MEMORY", "value": str(self.memory_mib)},
                                         *([{"type": "GPU", "value": str(self.gpus)}] if self.gpus else [])],
                **self.extra_properties}

    def request(self) -> dict[str, Any]:
        """As RegisterJobDefinition takes it (what batch_container reads)."""
        return {"jobDefinitionName": self.name, "type": "container", "parameters": dict(self.parameters),
                "containerProperties": self.container_properties()}

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError(f"job definition {self.name!r}: command is empty")
        if self.vcpus < 1 or self.memory_mib < 4:
            raise ValueError(f"job definition {self.name!r}: needs at least 1 vCPU and 4 MiB")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise ValueError(f"job definition {self.name!r}: timeout_seconds must be above 0")
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "environment", dict(self.environment))
        object.__setattr__(self, "parameters", dict(self.parameters))
        object.__setattr__(self, "extra_properties", dict(self.extra_properties))
        if not isinstance(self.retry, batch_retry.RetryStrategy):
            object.__setattr__(self, "retry", batch_retry.RetryStrategy.from_batch(self.retry))


@dataclass(frozen=True)
class Arns:
    """ARNs the way Batch and ECS spell them, for one account and Region."""

    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT

    def _batch(self, resource: str) -> str:
        return f"arn:aws:batch:{self.region}:{self.account}:{resource}"

    def job(self, job_id: str) -> str:
        return self._batch(f"job/{job_id}")

    def job_queue(self, name: str) -> str:
        return self._batch(f"job-queue/{name}")

    def job_definition(self, name: str, revision: int) -> str:
        return self._batch(f"job-definition/{name}:{revision}")

    def compute_environment(self, name: str) -> str:
        return self._batch(f"compute-environment/{name}")

    def ecs_cluster(self, ce_name: str) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:cluster/AWSBatch-{ce_name}"

    def ecs_task(self, ce_name: str, task_id: str) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:task/AWSBatch-{ce_name}/{task_id}"


Model = TypeVar("Model")


def coerce(cls: type[Model], value: Model | Mapping[str, Any]) -> Model:
    """A dataclass instance as is, or one built from a dict of its field names."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{cls.__name__}: expected {cls.__name__} or a dict, got {type(value).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})")
    return cls(**value)
