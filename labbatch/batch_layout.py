"""A lab's Batch layout: compute environments, queues and job definitions, as plain data.

The one contract with two runtimes: the CDK constructs render it into CloudFormation and local
mode registers it with its executor, so a job is told the same thing wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labbatch_contract import names, runner_env
from labbatch.config import Lab

RUNNER_COMMAND = ("labbatch-runner", "--")  # the runner installed on a host (local mode's host executor)
SCRATCH_MOUNT = "/scratch"
# The runner is not in the tool's image. The runner image's root filesystem is put on every
# instance at boot (lab_constructs/runner_image.py) and mounted read-only into each job's one
# container here; the job's command starts it with that tree's own dynamic loader and Python,
# so the tool image needs nothing of LabBatch's, not even a shell, and keeps its entrypoint.
RUNNER_MOUNT = "/opt/labbatch/runner"
RUNNER_HOST_PATH = "/opt/labbatch/runner"  # where the boot script unpacks the tree on an instance
_LOADERS = {"x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
            "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1")}


def runner_launch(architecture: str = "x86_64") -> tuple[str, ...]:
    """argv that starts the mounted runner in any image: its loader, its libraries, its Python.

    `-I` keeps the tool image's PYTHON* variables and working directory out of the runner's
    Python; `--library-path` applies to the runner process only, never to the tool it starts.
    """
    triplet, loader = _LOADERS[architecture]
    libraries = f"{RUNNER_MOUNT}/usr/lib/{triplet}"
    return (f"{libraries}/{loader}", "--library-path", libraries, f"{RUNNER_MOUNT}/usr/bin/python3.11",
            "-I", "-m", "labbatch_runner", "--")


RUNNER_LAUNCH = runner_launch("x86_64")


def on_host(command: list[str] | tuple[str, ...]) -> list[str]:
    """A job definition's command as a host process runs it: the installed runner in place of
    the mounted one (local mode without a container engine)."""
    for architecture in _LOADERS:
        launch = runner_launch(architecture)
        if tuple(command[:len(launch)]) == launch:
            return [*RUNNER_COMMAND, *command[len(launch):]]
    return list(command)
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
class HostMount:
    name: str
    host_path: str  # on the instance
    container_path: str
    read_only: bool


# Every job container gets these two and nothing else of the host.
JOB_MOUNTS = (
    HostMount("scratch", SCRATCH_MOUNT, SCRATCH_MOUNT, read_only=False),
    HostMount("labbatch-runner", RUNNER_HOST_PATH, RUNNER_MOUNT, read_only=True),
)


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
    mounts: tuple[HostMount, ...] = JOB_MOUNTS


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
            command=(*runner_launch(compute.architecture), *p.command),
            environment={runner_env.SCRATCH_DIR: SCRATCH_MOUNT, runner_env.LAB: lab.name,
                         runner_env.PIPELINE: name},
            vcpus=p.vcpus,
            memory_mib=p.memory_mib,
            timeout_seconds=p.timeout_minutes * 60,
            attempts=p.attempts,
            log_group=names.job_log_group(lab.name),
        )
        for name, p in lab.pipelines.items())
    return BatchLayout(environments, queues, definitions)
