"""The Describe* answers for what local mode registers: DescribeJobQueues,
DescribeJobDefinitions and DescribeComputeEnvironments, in Batch's own shapes.

Pure functions of a resource and the ARNs (and, for an environment, what the machine has and
runs now), so the executor only chooses which resources to describe.
"""

from __future__ import annotations

from typing import Any

from labbatch.local.batch.jobs import log_options
from labbatch.local.batch.models import Arns, ComputeEnvironment, JobDefinition, JobQueue
from labbatch.local.batch.scheduler import Capacity


def queue_detail(queue: JobQueue, arns: Arns) -> dict[str, Any]:
    return {
        "jobQueueName": queue.name,
        "jobQueueArn": arns.job_queue(queue.name),
        "state": "ENABLED" if queue.enabled else "DISABLED",
        "status": "VALID",
        "statusReason": "JobQueue Healthy",
        "priority": queue.priority,
        "computeEnvironmentOrder": [{"order": position, "computeEnvironment": arns.compute_environment(name)}
                                    for position, name in enumerate(queue.compute_environments, start=1)],
        "jobQueueType": "ECS",
        "tags": {},
        "jobStateTimeLimitActions": [{"reason": a.reason, "state": a.state, "maxTimeSeconds": a.max_time_seconds,
                                      "action": a.action} for a in queue.state_time_limit_actions],
    }


def definition_detail(definition: JobDefinition, arns: Arns) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "jobDefinitionName": definition.name,
        "jobDefinitionArn": arns.job_definition(definition.name, definition.revision),
        "revision": definition.revision,
        "status": "ACTIVE",
        "type": "container",
        "parameters": dict(definition.parameters),
        "retryStrategy": definition.retry.to_batch(),  # type: ignore[union-attr]
        "containerProperties": {
            "volumes": [], "mountPoints": [], "ulimits": [], "secrets": [],
            **definition.container_properties(),
            "logConfiguration": {"logDriver": "awslogs", "options": log_options(definition)},
        },
        "tags": {},
        "propagateTags": False,
        "platformCapabilities": ["EC2"],
        "containerOrchestrationType": "ECS",
    }
    if definition.timeout_seconds is not None:
        detail["timeout"] = {"attemptDurationSeconds": definition.timeout_seconds}
    return detail


def environment_detail(environment: ComputeEnvironment, arns: Arns, capacity: Capacity) -> dict[str, Any]:
    spot = environment.kind == "spot"
    return {
        "computeEnvironmentName": environment.name,
        "computeEnvironmentArn": arns.compute_environment(environment.name),
        "ecsClusterArn": arns.ecs_cluster(environment.name),
        "tags": {},
        "type": "MANAGED",
        "state": "ENABLED" if environment.enabled else "DISABLED",
        "status": "VALID",
        "statusReason": "ComputeEnvironment Healthy",
        "computeResources": {
            "type": "SPOT" if spot else "EC2",
            "allocationStrategy": environment.allocation_strategy
            or ("SPOT_PRICE_CAPACITY_OPTIMIZED" if spot else "BEST_FIT_PROGRESSIVE"),
            "minvCpus": 0,
            # Every environment is this machine here: it can never run more than the machine has.
            "maxvCpus": min(environment.max_vcpus, capacity.machine_vcpus)
            if environment.max_vcpus is not None else capacity.machine_vcpus,
            "desiredvCpus": capacity.used_by_environment.get(environment.name, 0),
            "instanceTypes": list(environment.instance_types),
            "subnets": [],
            "securityGroupIds": [],
        },
        "containerOrchestrationType": "ECS",
    }
