"""Where a job may run now: this machine's vCPUs and memory, shared by the compute environments.

Batch places a queue's jobs on its compute environments in order (the spot queue: spot, then
on-demand when spot is at its max vCPUs), and an environment never runs more than its
maxvCpus. Locally every environment is this machine, so one more cap applies to all: never run
more vCPUs, or more memory, at once than the machine has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labbatch_contract import batch_reasons
from labbatch.local.batch.models import ComputeEnvironment, JobQueue


@dataclass
class Capacity:
    machine_vcpus: int
    machine_memory_mib: int
    environments: dict[str, ComputeEnvironment]
    used_vcpus: int = 0
    used_memory_mib: int = 0
    used_by_environment: dict[str, int] = field(default_factory=dict)

    def place(self, queue: JobQueue, vcpus: int, memory_mib: int) -> ComputeEnvironment | None:
        """The first environment of the queue with room for the job now, if any."""
        if self.used_vcpus + vcpus > self.machine_vcpus or self.used_memory_mib + memory_mib > self.machine_memory_mib:
            return None
        for name in queue.compute_environments:
            environment = self.environments[name]
            if not environment.enabled:
                continue
            if environment.max_vcpus is None or self.used_by_environment.get(name, 0) + vcpus <= environment.max_vcpus:
                return environment
        return None

    def never_placeable(self, queue: JobQueue, vcpus: int, memory_mib: int) -> str | None:
        """Batch's RUNNABLE reason when no environment of the queue could ever run the job."""
        if vcpus > self.machine_vcpus or memory_mib > self.machine_memory_mib:
            return batch_reasons.BLOCKED_BY_JOB_SIZE
        usable = [self.environments[name] for name in queue.compute_environments if self.environments[name].enabled]
        if usable and all(env.max_vcpus is not None and vcpus > env.max_vcpus for env in usable):
            return batch_reasons.BLOCKED_BY_CE_MAX
        return None

    def reserve(self, environment: str, vcpus: int, memory_mib: int) -> None:
        self.used_vcpus += vcpus
        self.used_memory_mib += memory_mib
        self.used_by_environment[environment] = self.used_by_environment.get(environment, 0) + vcpus

    def release(self, environment: str, vcpus: int, memory_mib: int) -> None:
        self.used_vcpus -= vcpus
        self.used_memory_mib -= memory_mib
        self.used_by_environment[environment] -= vcpus
