"""A GA4GH TES task's `resources` as a LabBatch job asks them: the one place that translates
cpu_cores into vCPUs, ram_gb into MiB, disk_gb into scratch, and preemptible into a queue, and
places the task on a pool through the same rule as POST /jobs (admission.place_job)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from labbatch_api import tes_models as m
from labbatch_api.admission import place_job
from labbatch_api.errors import refused
from labbatch_contract.settings import LabSettings, PoolSettings

# What a task that names no ram_gb gets (within the lab's limit).
DEFAULT_MEMORY_MIB = 2048
# Batch refuses a container with less.
MIN_MEMORY_MIB = 4
GIB = 1024**3


@dataclass(frozen=True)
class TaskResources:
    queue: str
    vcpus: int
    memory_mib: int
    pool: str
    pool_settings: PoolSettings

    @property
    def job_queue(self) -> str:
        return self.pool_settings.queues[self.queue]


def task_resources(task: m.TesTaskRequest, settings: LabSettings, input_bytes: int = 0) -> TaskResources:
    """Queue, vCPUs, memory MiB and pool, through the same admission as POST /jobs. `input_bytes`:
    what the task's inputs measure, once listed; the pool's scratch must hold them."""
    resources = task.resources or m.TesResources()
    pools = settings.pool_map()
    queues = {q for pool in pools.values() for q in pool.queues}
    queue = "spot" if resources.preemptible else "on-demand"
    if queue not in queues:
        if resources.preemptible:
            queue = "on-demand"  # spot asked for and none: on-demand is no worse for the task
        else:
            raise refused("no_on_demand_queue", f"resources.preemptible: lab {settings.lab} has no on-demand "
                          "queue; send preemptible: true", field="resources.preemptible")
    vcpus = resources.cpu_cores or 1
    limit_mib = max(pool.limits.max_memory_mib for pool in pools.values())
    if resources.ram_gb and resources.ram_gb * 1024 > limit_mib:
        # Refused here, in the unit asked in (place_job speaks MiB), and before any ceil():
        # 1e308 GB x 1024 is infinite.
        limit_gb = math.floor(limit_mib / 1024 * 100) / 100
        raise refused("memory_too_large", f"resources.ram_gb: {resources.ram_gb:g} GB is more than a job can get "
                      f"on this lab ({limit_mib:,} MiB); ask for {limit_gb:g} or less", field="resources.ram_gb",
                      asked=resources.ram_gb, available=limit_gb)
    if resources.ram_gb:
        memory_mib = max(MIN_MEMORY_MIB, math.ceil(resources.ram_gb * 1024))
    else:
        memory_mib = min(DEFAULT_MEMORY_MIB, limit_mib)
    max_scratch = max(pool.scratch_gib for pool in pools.values())
    if resources.disk_gb and resources.disk_gb > max_scratch:
        raise refused("scratch_too_small", f"resources.disk_gb: {resources.disk_gb:g} GB is more than the lab's "
                      f"scratch volume ({max_scratch} GiB); ask for {max_scratch} or less",
                      field="resources.disk_gb", asked=resources.disk_gb, available=max_scratch)
    # TES 1.1 has no GPU field: a task asks for none, and is placed like a job of a pipeline
    # that names no pool.
    name, pool = place_job(vcpus, memory_mib, queue, settings, vcpus_field="resources.cpu_cores",
                           memory_field="resources.ram_gb",
                           scratch_field="inputs" if input_bytes else "resources.disk_gb",
                           scratch_bytes=max(input_bytes, math.ceil((resources.disk_gb or 0) * GIB)))
    return TaskResources(queue, vcpus, memory_mib, name, pool)
