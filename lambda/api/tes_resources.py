"""A GA4GH TES task's `resources` as a LabBatch job asks them: the one place that translates
cpu_cores into vCPUs, ram_gb into MiB, disk_gb into the scratch check, and preemptible into a
queue, through the same admission rules as POST /jobs (admission.check_resources)."""

from __future__ import annotations

import math

import tes_models as m
from admission import check_resources
from api_errors import refused
from labbatch_contract.settings import LabSettings

# What a task that names no ram_gb gets (within the lab's limit).
DEFAULT_MEMORY_MIB = 2048
# Batch refuses a container with less.
MIN_MEMORY_MIB = 4


def task_resources(task: m.TesTaskRequest, settings: LabSettings) -> tuple[str, int, int]:
    """(queue, vcpus, memory MiB) through the same admission as POST /jobs."""
    resources = task.resources or m.TesResources()
    queue = "spot" if resources.preemptible else "on-demand"
    if queue not in settings.queues:
        other = next(iter(settings.queues))
        if resources.preemptible:
            queue = other  # spot asked for and none: on-demand is no worse for the task
        else:
            raise refused("no_on_demand_queue", f"resources.preemptible: lab {settings.lab} has no on-demand "
                          "queue; send preemptible: true", field="resources.preemptible")
    vcpus = resources.cpu_cores or 1
    limit_mib = settings.limits.max_memory_mib
    if resources.ram_gb and resources.ram_gb * 1024 > limit_mib:
        # Refused here, in the unit asked in (check_resources speaks MiB), and before any ceil():
        # 1e308 GB x 1024 is infinite.
        limit_gb = math.floor(limit_mib / 1024 * 100) / 100
        raise refused("memory_too_large", f"resources.ram_gb: {resources.ram_gb:g} GB is more than a job can get "
                      f"on this lab ({limit_mib:,} MiB); ask for {limit_gb:g} or less", field="resources.ram_gb",
                      asked=resources.ram_gb, available=limit_gb)
    if resources.ram_gb:
        memory_mib = max(MIN_MEMORY_MIB, math.ceil(resources.ram_gb * 1024))
    else:
        memory_mib = min(DEFAULT_MEMORY_MIB, limit_mib)
    check_resources(vcpus, memory_mib, queue, settings, vcpus_field="resources.cpu_cores",
                    memory_field="resources.ram_gb")
    if resources.disk_gb and resources.disk_gb > settings.scratch_gib:
        raise refused("scratch_too_small", f"resources.disk_gb: {resources.disk_gb:g} GB is more than the lab's "
                      f"scratch volume ({settings.scratch_gib} GiB); ask for {settings.scratch_gib} or less",
                      field="resources.disk_gb", asked=resources.disk_gb, available=settings.scratch_gib)
    return queue, vcpus, memory_mib
