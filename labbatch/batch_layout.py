"""A lab's Batch layout: compute environments, queues and job definitions, as plain data.

The one contract with two runtimes: the CDK constructs render it into CloudFormation and local
mode registers it with its executor, so a job is told the same thing wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labbatch import names
from labbatch.config import Lab

RUNNER_COMMAND = ("labbatch-runner", "--")
SCRATCH_MOUNT = "/scratch"
# Spot reclaims show up as Batch's status reason "Host EC2 (instance i-...) terminated."
SPOT_RECLAIM_STATUS_REASON = "Host EC2*"
# Batch retries a job that matches no rule, so the catch-all EXIT must come last.
RETRY_RULES = (
    {"action": "RETRY", "onStatusReason": SPOT_RECLAIM_STATUS_REASON},
    {"action": "EXIT", "onReason": "*"},
)
UNPLACEABLE_REASONS = ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
                       "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE")
NO_CAPACITY_REASON = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"


@dataclass(frozen=True)
class ComputeEnvironmentSpec:
    kind: str  # "spot" | "on-demand"
    max_vcpus: int
    instance_types: tuple[str, ...]
    # The lab's spot strategy for spot; on-demand's is the one Batch updates in place.
    allocation_strategy: str = "BEST_FIT_PROGRESSIVE"


@dataclass(frozen=True)
class QueueSpec:
    queue: str  # "spot" | "on-demand", what the API calls it
    name: str
    priority: int
    environments: tuple[str, ...]  # compute environment kinds, in order
    cancel_after_seconds: dict[str, int] = field(default_factory=dict)  # reason -> seconds RUNNABLE


@dataclass(frozen=True)
class JobDefinitionSpec:
    pipeline: str
    name: str
    image: str
    command: tuple[str, ...]
    environment: dict[str, str]
    vcpus: int
    memory_mib: int
    timeout_seconds: int
    attempts: int
    log_group: str
    retry_rules: tuple[dict[str, str], ...] = RETRY_RULES


@dataclass(frozen=True)
class BatchLayout:
    environments: tuple[ComputeEnvironmentSpec, ...]
    queues: tuple[QueueSpec, ...]
    job_definitions: tuple[JobDefinitionSpec, ...]


def layout(lab: Lab) -> BatchLayout:
    compute = lab.compute
    environments = tuple(
        ComputeEnvironmentSpec(kind, max_vcpus, tuple(compute.instance_types),
                               compute.spot_allocation_strategy if kind == "spot" else "BEST_FIT_PROGRESSIVE")
        for kind, max_vcpus in (("on-demand", compute.on_demand_max_vcpus), ("spot", compute.spot_max_vcpus))
        if max_vcpus > 0)
    present = {e.kind for e in environments}
    cancel_after = {reason: compute.cancel_unplaceable_after_minutes * 60 for reason in UNPLACEABLE_REASONS}
    cancel_after[NO_CAPACITY_REASON] = compute.cancel_no_capacity_after_minutes * 60
    # The spot queue tries spot first and falls back to on-demand; the on-demand queue is the
    # priority lane that never waits on spot capacity.
    plan = (("spot", 10, ("spot", "on-demand")), ("on-demand", 20, ("on-demand",)))
    queues = tuple(
        QueueSpec(queue, names.job_queue(lab.name, queue), priority,
                  tuple(k for k in kinds if k in present), dict(cancel_after))
        for queue, priority, kinds in plan if any(k in present for k in kinds))
    definitions = tuple(
        JobDefinitionSpec(
            pipeline=name,
            name=names.job_definition(lab.name, name),
            image=p.image,
            command=(*RUNNER_COMMAND, *p.command),
            environment={"LABBATCH_SCRATCH_DIR": SCRATCH_MOUNT, "LABBATCH_LAB": lab.name,
                         "LABBATCH_PIPELINE": name},
            vcpus=p.vcpus,
            memory_mib=p.memory_mib,
            timeout_seconds=p.timeout_minutes * 60,
            attempts=p.attempts,
            log_group=names.job_log_group(lab.name),
        )
        for name, p in lab.pipelines.items())
    return BatchLayout(environments, queues, definitions)
