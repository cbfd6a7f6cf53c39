"""The lab's Batch layout (labbatch.lab.batch_layout, what the constructs deploy) as LocalBatch's
registration, so local mode runs the very queues, retry rules and job definitions AWS gets."""

from __future__ import annotations

from typing import Any

from labbatch_contract import names
from labbatch.lab.batch_layout import BatchLayout, HostMount
from labbatch.lab.config import DEFAULT_POOL
from labbatch.local.batch.models import ComputeEnvironment, JobDefinition, JobQueue, StateTimeLimitAction


def compute_environment_name(lab: str, kind: str, pool: str = DEFAULT_POOL) -> str:
    # CloudFormation names them in AWS; locally they only need to be stable and readable. Every
    # pool's environments share this machine (the executor's capacity), as its queues do in AWS
    # share nothing but the account's quotas.
    return f"{names.PREFIX}-{lab}-{kind}" if pool == DEFAULT_POOL else f"{names.PREFIX}-{lab}-{pool}-{kind}"


def mounts_properties(mounts: tuple[HostMount, ...]) -> dict[str, Any]:
    """The definition's volumes and mount points, spelled as lab_constructs/pipelines.py has CDK spell them."""
    return {"volumes": [{"name": m.name, "host": {"sourcePath": m.host_path}} for m in mounts],
            "mountPoints": [{"containerPath": m.container_path, "readOnly": m.read_only, "sourceVolume": m.name}
                            for m in mounts]}


def registration(layout: BatchLayout, lab: str) -> dict[str, Any]:
    """Keyword arguments for `LocalBatch(**registration(layout, lab), ...)`."""
    environments = [ComputeEnvironment(name=compute_environment_name(lab, spec.kind, spec.pool), kind=spec.kind,  # type: ignore[arg-type]
                                       max_vcpus=spec.max_vcpus, instance_types=spec.instance_types,
                                       allocation_strategy=spec.allocation_strategy)
                    for spec in layout.environments]
    queues = [JobQueue(name=spec.name, priority=spec.priority,
                       compute_environments=tuple(compute_environment_name(lab, kind, spec.pool)
                                                  for kind in spec.environments),
                       state_time_limit_actions=tuple(StateTimeLimitAction(reason=reason, max_time_seconds=seconds)
                                                      for reason, seconds in spec.cancel_after_seconds.items()))
              for spec in layout.queues]
    definitions = [JobDefinition(name=spec.name, command=spec.command, image=spec.image,
                                 environment=spec.environment, vcpus=spec.vcpus, memory_mib=spec.memory_mib,
                                 timeout_seconds=spec.timeout_seconds, log_stream_prefix=spec.pipeline,
                                 log_group=spec.log_group, gpus=spec.gpus,
                                 extra_properties=mounts_properties(spec.mounts),
                                 retry={"attempts": spec.attempts, "evaluateOnExit": [dict(r) for r in spec.retry_rules]})
                   for spec in layout.job_definitions]
    return {"compute_environments": environments, "queues": queues, "job_definitions": definitions}
