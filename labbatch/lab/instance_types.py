"""Facts about the EC2 instance types a lab may name, and what a Batch job can really get on them.

Table as of 2026-11 (AWS EC2 instance type pages). Only the current general purpose (m),
compute optimized (c) and memory optimized (r) families whose sizes follow the fixed
memory-per-vCPU ladder below; metal and the very largest sizes are left out because their
shapes differ per family.

Why a job gets less than the nominal memory: the ECS agent registers the memory the
operating system reports, which is already less than nominal (AWS Batch user guide,
"Compute resource memory management": an 8 GiB m4.large registers 7,985 MiB, about 97.5%),
and it can reserve more on top. AWS advises leaving a 5% buffer. A job that asks for more
than the instance registers sits in RUNNABLE forever, so LabBatch promises at most 95% of
nominal memory, which is below the registered figure for every type in this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from labbatch.lab.gpu_types import GPU_TYPES, gpu_families

Architecture = Literal["x86_64", "arm64"]

TABLE_DATE = "2026-11-01"
USABLE_MEMORY_SHARE = 0.95

# family -> (architecture, GiB of memory per vCPU)
_FAMILIES: dict[str, tuple[Architecture, int]] = {
    # general purpose
    "m6i": ("x86_64", 4), "m7i": ("x86_64", 4), "m6a": ("x86_64", 4), "m7a": ("x86_64", 4),
    "m6g": ("arm64", 4), "m7g": ("arm64", 4), "m8g": ("arm64", 4),
    # compute optimized
    "c6i": ("x86_64", 2), "c7i": ("x86_64", 2), "c6a": ("x86_64", 2), "c7a": ("x86_64", 2),
    "c6g": ("arm64", 2), "c7g": ("arm64", 2), "c8g": ("arm64", 2),
    # memory optimized
    "r6i": ("x86_64", 8), "r7i": ("x86_64", 8), "r6a": ("x86_64", 8), "r7a": ("x86_64", 8),
    "r6g": ("arm64", 8), "r7g": ("arm64", 8), "r8g": ("arm64", 8),
}

# size -> vCPUs; the same ladder in every family above
_SIZES: dict[str, int] = {
    "large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16,
    "8xlarge": 32, "12xlarge": 48, "16xlarge": 64,
}


@dataclass(frozen=True)
class InstanceType:
    name: str
    architecture: Architecture
    vcpus: int
    memory_mib: int
    gpus: int = 0
    gpu_memory_mib: int = 0  # per GPU

    @property
    def family(self) -> str:
        return self.name.split(".")[0]

    @property
    def job_memory_mib(self) -> int:
        """The most memory a job can ask for and still be placed on this type."""
        return int(self.memory_mib * USABLE_MEMORY_SHARE)


def _build_table() -> dict[str, InstanceType]:
    table = {}
    for family, (arch, gib_per_vcpu) in _FAMILIES.items():
        for size, vcpus in _SIZES.items():
            name = f"{family}.{size}"
            table[name] = InstanceType(name, arch, vcpus, vcpus * gib_per_vcpu * 1024)
    for name, (vcpus, gib, gpus, gpu_gib) in GPU_TYPES.items():
        table[name] = InstanceType(name, "x86_64", vcpus, gib * 1024, gpus, gpu_gib * 1024)
    return table


INSTANCE_TYPES: dict[str, InstanceType] = _build_table()


def lookup(name: str) -> InstanceType | None:
    return INSTANCE_TYPES.get(name)


def known_families() -> list[str]:
    return sorted(_FAMILIES)


def known_gpu_families() -> list[str]:
    return gpu_families()


def expand(names: list[str] | tuple[str, ...]) -> list[InstanceType]:
    """The types a list names: a type itself, or a family (`r6i`, `g5`: every size of it in the
    table), as AWS Batch reads a family name. Unknown names raise KeyError."""
    types: list[InstanceType] = []
    for name in names:
        if name in INSTANCE_TYPES:
            types.append(INSTANCE_TYPES[name])
            continue
        family = [t for t in INSTANCE_TYPES.values() if t.family == name]
        if not family:
            raise KeyError(name)
        types.extend(family)
    return types


def is_known(name: str) -> bool:
    return name in INSTANCE_TYPES or any(t.family == name for t in INSTANCE_TYPES.values())


def job_limits(names: list[str]) -> tuple[int, int]:
    """(max vCPUs, max memory MiB) a single job can ask for on any of these types."""
    types = expand(names)
    return max(t.vcpus for t in types), max(t.job_memory_mib for t in types)


def gpu_limits(names: list[str]) -> tuple[int, int]:
    """(max GPUs, max memory MiB per GPU) a single job can ask for on any of these types."""
    types = expand(names)
    return max(t.gpus for t in types), max(t.gpu_memory_mib for t in types)


def fits_any(names: list[str], vcpus: int, memory_mib: int, gpus: int = 0) -> bool:
    """Whether one instance among these types can hold the vCPUs, the memory and the GPUs."""
    return any(t.vcpus >= vcpus and t.job_memory_mib >= memory_mib and t.gpus >= gpus for t in expand(names))
