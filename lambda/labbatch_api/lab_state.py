"""The lab's Batch resources as Batch reports them: queues, their compute environments, and the
job definitions' images. Read by GET /lab (what `labbatch doctor` checks) and by waiting.py.

IAM: batch:DescribeJobQueues, batch:DescribeComputeEnvironments and
batch:DescribeJobDefinitions support no resource-level permissions, so the handler holds them
on "*". Nothing here writes anything.
"""

from __future__ import annotations

from typing import Any

from labbatch_contract import tes as tes_rules
from labbatch_contract.settings import LabSettings
from labbatch_api.pool_views import pool_views

# Batch's words for a usable queue or compute environment.
ENABLED = "ENABLED"
VALID = "VALID"
# Updating keeps running what it has; only INVALID and DISABLED stop placements.
USABLE_STATUSES = frozenset({"VALID", "UPDATING"})
MAX_DESCRIBE = 100


def short_name(arn_or_name: str) -> str:
    """`arn:aws:batch:...:job-queue/name` -> `name` (also compute environments, definitions)."""
    return arn_or_name.rsplit("/", 1)[-1]


def queue_details(batch, queue_names: list[str]) -> dict[str, dict[str, Any]]:
    """DescribeJobQueues for these queues, by queue name; a queue Batch does not know is absent."""
    if not queue_names:
        return {}
    found = batch.describe_job_queues(jobQueues=list(queue_names)).get("jobQueues", [])
    return {queue["jobQueueName"]: queue for queue in found}


def environment_details(batch, references: list[str]) -> dict[str, dict[str, Any]]:
    """DescribeComputeEnvironments by ARN or name; the answer is keyed by both ARN and name."""
    answer: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(references))
    for start in range(0, len(wanted), MAX_DESCRIBE):
        for environment in batch.describe_compute_environments(
            computeEnvironments=wanted[start : start + MAX_DESCRIBE]
        ).get("computeEnvironments", []):
            answer[environment["computeEnvironmentArn"]] = environment
            answer[environment["computeEnvironmentName"]] = environment
    return answer


def environment_order(queue: dict[str, Any]) -> list[str]:
    """The queue's compute environments (ARNs), in the order Batch tries them."""
    return [entry["computeEnvironment"] for entry in sorted(queue.get("computeEnvironmentOrder", []),
                                                             key=lambda entry: entry.get("order", 0))]


def is_usable(environment: dict[str, Any]) -> bool:
    return environment.get("state") == ENABLED and environment.get("status") in USABLE_STATUSES


def environment_view(environment: dict[str, Any]) -> dict[str, Any]:
    resources = environment.get("computeResources") or {}
    return {
        "name": environment["computeEnvironmentName"],
        "state": environment.get("state"),
        "status": environment.get("status"),
        "status_reason": environment.get("statusReason"),
        "type": resources.get("type") or environment.get("type"),
        "max_vcpus": resources.get("maxvCpus"),
        "desired_vcpus": resources.get("desiredvCpus"),
        "instance_types": list(resources.get("instanceTypes") or []),
        # Where its instances join: `labbatch why`/`doctor` ask ECS whether any has (boot_reasons).
        "ecs_cluster": environment.get("ecsClusterArn"),
    }


def lab_view(batch, settings: LabSettings) -> dict[str, Any]:
    """GET /lab: every queue of the lab with its compute environments, and each pipeline's image."""
    # Every pool's queues, in the lab file's order of pools.
    names = [(pool_name, key, name) for pool_name, pool in settings.pool_map().items()
             for key, name in sorted(pool.queues.items())]
    queues = queue_details(batch, [name for _, _, name in names])
    environment_refs = [ref for queue in queues.values() for ref in environment_order(queue)]
    environments = environment_details(batch, environment_refs)
    queue_views = []
    for pool_name, key, name in names:
        queue = queues.get(name)
        if queue is None:
            queue_views.append({"queue": key, "name": name, "pool": pool_name, "state": None, "status": "MISSING",
                                "status_reason": "Batch does not know this job queue", "compute_environments": []})
            continue
        queue_views.append({
            "queue": key,
            "name": name,
            "pool": pool_name,
            "state": queue.get("state"),
            "status": queue.get("status"),
            "status_reason": queue.get("statusReason"),
            "compute_environments": [
                environment_view(environments[ref]) if ref in environments
                else {"name": short_name(ref), "state": None, "status": "MISSING",
                      "status_reason": "Batch does not know this compute environment",
                      "type": None, "max_vcpus": None, "desired_vcpus": None, "instance_types": [],
                      "ecs_cluster": None}
                for ref in environment_order(queue)
            ],
        })
    tes = ({"base_path": tes_rules.TES_BASE, "allowed_images": list(settings.tes.allowed_images)}
           if settings.tes.allowed_images else None)
    return {"lab": settings.lab, "queues": queue_views, "pools": pool_views(settings),
            "pipelines": _pipeline_views(batch, settings),
            "buckets": settings.buckets.model_dump(), "tes": tes}


def _pipeline_views(batch, settings: LabSettings) -> list[dict[str, Any]]:
    views = []
    for name, pipeline in sorted(settings.pipelines.items()):
        revisions = batch.describe_job_definitions(
            jobDefinitionName=pipeline.job_definition, status="ACTIVE"
        ).get("jobDefinitions", [])
        latest = max(revisions, key=lambda d: d.get("revision", 0), default=None)
        container = (latest or {}).get("containerProperties") or {}
        views.append({
            "name": name,
            "job_definition": pipeline.job_definition,
            "revision": (latest or {}).get("revision"),
            "status": "ACTIVE" if latest else "MISSING",
            "image": container.get("image"),
            "command": list(container.get("command") or []),
            "log_group": ((container.get("logConfiguration") or {}).get("options") or {}).get("awslogs-group"),
            "pool": pipeline.pool,
            "gpus": pipeline.gpus,
        })
    return views
