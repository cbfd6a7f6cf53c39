"""A lab's Batch layout: compute environments, queues and job definitions, as plain data.

The one contract with two runtimes: the CDK constructs render it into CloudFormation and local
mode registers it with its executor, so a job is told the same thing wherever it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from labbatch_contract import batch_reasons, job_layout, names, runner_env
from labbatch_contract.job_layout import (RETRY_RULES, RUNNER_HOST_PATH, RUNNER_MOUNT, SCRATCH_MOUNT,  # noqa: F401
                                         SPOT_RECLAIM_STATUS_REASON, runner_launch)
from labbatch.lab.config import DEFAULT_POOL, Lab, Pipeline

RUNNER_COMMAND = ("labbatch-runner", "--")  # the runner installed on a host (local mode's host executor)
# The runner is not in the tool's image. The runner image's root filesystem is put on every
# instance at boot (lab_constructs/runner_image.py) and mounted read-only into each job's one
# container here; the job's command starts it with that tree's own dynamic loader and Python,
# so the tool image needs nothing of LabBatch's, not even a shell, and keeps its entrypoint.
# The layout itself is labbatch_contract.job_layout, which the API's TES routes share.
_LOADERS = job_layout.LOADERS


RUNNER_LAUNCH = runner_launch("x86_64")


def on_host(command: list[str] | tuple[str, ...]) -> list[str]:
    """A job definition's command as a host process runs it: the installed runner in place of
    the mounted one (local mode without a container engine)."""
    for architecture in _LOADERS:
        launch = runner_launch(architecture)
        if tuple(command[:len(launch)]) == launch:
            return [*RUNNER_COMMAND, *command[len(launch):]]
    return list(command)


UNPLACEABLE_REASONS = batch_reasons.UNPLACEABLE
NO_CAPACITY_REASON = batch_reasons.INSUFFICIENT_INSTANCE_CAPACITY


@dataclass(frozen=True)
class ComputeEnvironmentSpec:
    kind: str  # "spot" | "on-demand"
    max_vcpus: int
    instance_types: tuple[str, ...]
    # The lab's spot strategy for spot; on-demand's is the one Batch updates in place.
    allocation_strategy: str = "BEST_FIT_PROGRESSIVE"
    pool: str = DEFAULT_POOL
    gpu: bool = False


@dataclass(frozen=True)
class QueueSpec:
    queue: str  # "spot" | "on-demand", what the API calls it
    name: str
    priority: int
    environments: tuple[str, ...]  # compute environment kinds of its pool, in order
    cancel_after_seconds: dict[str, int] = field(default_factory=dict)  # reason -> seconds RUNNABLE
    pool: str = DEFAULT_POOL


@dataclass(frozen=True)
class HostMount:
    name: str
    host_path: str  # on the instance
    container_path: str
    read_only: bool


# Every job container gets these two and nothing else of the host.
JOB_MOUNTS = tuple(HostMount(*mount) for mount in job_layout.MOUNTS)


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
    gpus: int = 0
    retry_rules: tuple[dict[str, str], ...] = RETRY_RULES
    mounts: tuple[HostMount, ...] = JOB_MOUNTS


@dataclass(frozen=True)
class BatchLayout:
    environments: tuple[ComputeEnvironmentSpec, ...]
    queues: tuple[QueueSpec, ...]
    job_definitions: tuple[JobDefinitionSpec, ...]


def _environment(lab: Lab, name: str, pipeline: Pipeline) -> dict[str, str]:
    environment = {runner_env.SCRATCH_DIR: SCRATCH_MOUNT, runner_env.LAB: lab.name, runner_env.PIPELINE: name,
                   runner_env.DISK_FACTOR: f"{pipeline.disk_factor:g}"}
    if pipeline.secondary_files:
        environment[runner_env.SECONDARY_FILES] = json.dumps(pipeline.secondary_files, separators=(",", ":"),
                                                             sort_keys=True)
    return environment


def layout(lab: Lab) -> BatchLayout:
    compute = lab.compute
    environments: list[ComputeEnvironmentSpec] = []
    queues: list[QueueSpec] = []
    cancel_after = {reason: compute.cancel_unplaceable_after_minutes * 60 for reason in UNPLACEABLE_REASONS}
    cancel_after[NO_CAPACITY_REASON] = compute.cancel_no_capacity_after_minutes * 60
    for pool_name, pool in lab.pools.items():
        mine = [ComputeEnvironmentSpec(kind, max_vcpus, tuple(pool.instance_types),
                                       pool.spot_allocation_strategy if kind == "spot" else "BEST_FIT_PROGRESSIVE",
                                       pool_name, pool.gpu)
                for kind, max_vcpus in (("on-demand", pool.on_demand_max_vcpus), ("spot", pool.spot_max_vcpus))
                if max_vcpus > 0]
        environments += mine
        present = {e.kind for e in mine}
        # The spot queue tries spot first and falls back to on-demand (of the same pool: a job
        # is placed on a pool for its shape, so it never falls back to another pool's instances);
        # the on-demand queue is the priority lane that never waits on spot capacity.
        plan = (("spot", 10, ("spot", "on-demand")), ("on-demand", 20, ("on-demand",)))
        queues += [
            QueueSpec(queue, names.pool_job_queue(lab.name, pool_name, queue), priority,
                      tuple(k for k in kinds if k in present), dict(cancel_after), pool_name)
            for queue, priority, kinds in plan if any(k in present for k in kinds)]
    definitions = tuple(
        JobDefinitionSpec(
            pipeline=name,
            name=names.job_definition(lab.name, name),
            image=p.image,
            command=(*runner_launch(compute.architecture), *p.command),
            environment=_environment(lab, name, p),
            vcpus=p.vcpus,
            memory_mib=p.memory_mib,
            timeout_seconds=p.timeout_minutes * 60,
            attempts=p.attempts,
            log_group=names.job_log_group(lab.name),
            gpus=p.gpus,
        )
        for name, p in lab.pipelines.items())
    return BatchLayout(tuple(environments), tuple(queues), definitions)
