"""The lab's compute: instance pools (`compute.pools.<name>`, or the legacy one-pool `compute:`
block, which is the pool `default`), each with its instance types, vCPU ceilings, scratch volume
and image; and the rule that every pipeline fits a pool it may be placed on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, Protocol

from pydantic import Field, field_validator, model_validator

from labbatch.lab import instance_types
from labbatch.lab.config_base import FieldPath, FieldProblems
from labbatch.lab.config_base import Strict as _Strict
from labbatch.lab.config_base import allowed as _allowed



class Pipeline(Protocol):
    """What the pool rules read of a pipeline (labbatch.lab.config.Pipeline), named here so that the
    compute model does not import the lab model that holds it."""
    pool: str | None
    gpus: int
    vcpus: int
    memory_mib: int
    default_queue: str

GP3_SIZE_GIB = (1, 65_536)
GP3_IOPS = (3_000, 80_000)
GP3_THROUGHPUT_MIBPS = (125, 2_000)
GP3_IOPS_PER_GIB = 500
GP3_THROUGHPUT_PER_IOPS = 0.25
BATCH_MAX_VCPUS = 100_000
AMI_RE = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?\Z")


class ScratchVolume(_Strict):
    size_gib: int = Field(100, ge=GP3_SIZE_GIB[0], le=GP3_SIZE_GIB[1],
                          json_schema_extra=_allowed(f"{GP3_SIZE_GIB[0]}-{GP3_SIZE_GIB[1]:,} GiB (gp3)"))
    iops: int = Field(3_000, ge=GP3_IOPS[0], le=GP3_IOPS[1],
                      json_schema_extra=_allowed(f"{GP3_IOPS[0]:,}-{GP3_IOPS[1]:,} (gp3)"))
    throughput_mibps: int = Field(125, ge=GP3_THROUGHPUT_MIBPS[0], le=GP3_THROUGHPUT_MIBPS[1],
                                  json_schema_extra=_allowed(
                                      f"{GP3_THROUGHPUT_MIBPS[0]}-{GP3_THROUGHPUT_MIBPS[1]:,} MiB/s (gp3)"))

    @model_validator(mode="after")
    def _gp3_ratios(self) -> ScratchVolume:
        problems = []
        if self.iops > self.size_gib * GP3_IOPS_PER_GIB:
            problems.append(
                f"iops {self.iops:,} is more than {GP3_IOPS_PER_GIB} per GiB of a {self.size_gib} GiB volume "
                f"(allowed: at most {self.size_gib * GP3_IOPS_PER_GIB:,}; raise size_gib or lower iops)")
        if self.throughput_mibps > self.iops * GP3_THROUGHPUT_PER_IOPS:
            problems.append(
                f"throughput_mibps {self.throughput_mibps} is more than {GP3_THROUGHPUT_PER_IOPS} MiB/s per IOPS "
                f"(allowed: at most {int(self.iops * GP3_THROUGHPUT_PER_IOPS)} with {self.iops:,} iops)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
MAX_POOL_NAME = 20
DEFAULT_POOL = "default"
MAX_GPUS = 8  # the most any type in the GPU table has
# The fields of one pool; in the legacy `compute:` block they describe the one pool `default`.
POOL_FIELDS = ("instance_types", "ami_id", "scratch", "on_demand_max_vcpus", "spot_max_vcpus",
               "spot_allocation_strategy", "gpu")


def _instance_types_allowed() -> str:
    return ("sizes large..16xlarge of " + ", ".join(instance_types.known_families())
            + ", or whole families; GPU pools: " + ", ".join(instance_types.known_gpu_families()))


class Pool(_Strict):
    """One instance pool: its own compute environments (spot, on-demand), queues and launch template."""

    instance_types: list[str] = Field(
        default_factory=lambda: ["m6i.large", "m6i.xlarge", "m6i.2xlarge"], min_length=1,
        json_schema_extra=_allowed(_instance_types_allowed()))
    ami_id: str | None = Field(None, json_schema_extra=_allowed(
        "an AMI id (ami-xxxxxxxx); leave out for the ECS-optimized Amazon Linux 2023 image (its GPU image "
        "in a gpu pool)"))
    scratch: ScratchVolume = ScratchVolume()
    on_demand_max_vcpus: int = Field(16, ge=0, le=BATCH_MAX_VCPUS,
                                     json_schema_extra=_allowed(f"0-{BATCH_MAX_VCPUS:,}"))
    spot_max_vcpus: int = Field(64, ge=0, le=BATCH_MAX_VCPUS,
                                json_schema_extra=_allowed(f"0-{BATCH_MAX_VCPUS:,}"))
    # Only these two spot strategies let Batch update a compute environment in place, which is
    # what carries a new launch template or AMI to running environments on the next deploy.
    spot_allocation_strategy: Literal["SPOT_PRICE_CAPACITY_OPTIMIZED", "SPOT_CAPACITY_OPTIMIZED"] = \
        "SPOT_PRICE_CAPACITY_OPTIMIZED"
    # GPU instances start from the ECS-optimized AL2023 GPU image (NVIDIA driver and container
    # toolkit), which the ECS agent needs to hand a job its GPUs.
    gpu: bool = Field(False, json_schema_extra=_allowed("true (GPU instance types, the ECS GPU image) or false"))

    @field_validator("instance_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if not instance_types.is_known(t)]
        if unknown:
            raise ValueError(f"unknown instance type(s) {', '.join(unknown)} (allowed: {_instance_types_allowed()})")
        if len(set(value)) != len(value):
            raise ValueError("instance types listed twice")
        arches = {t.architecture for t in instance_types.expand(value)}
        if len(arches) > 1:
            raise ValueError("instance types mix x86_64 and arm64 (allowed: one architecture per pool, "
                             "since a compute environment runs one AMI)")
        return value

    @field_validator("ami_id")
    @classmethod
    def _ami(cls, value: str | None) -> str | None:
        if value is not None and not AMI_RE.match(value):
            raise ValueError(f"{value!r} is not an AMI id (allowed: ami- followed by 8 or 17 hex digits)")
        return value

    @model_validator(mode="after")
    def _pool_checks(self) -> Pool:
        if self.__dict__.get("pools") is not None:
            return self  # a Compute with pools: its own pool fields are unused defaults (each pool checks itself)
        problems = []
        if self.on_demand_max_vcpus == 0 and self.spot_max_vcpus == 0:
            problems.append(((), "on_demand_max_vcpus and spot_max_vcpus are both 0: no job could ever run "
                                 "(allowed: at least one above 0)"))
        types = instance_types.expand(self.instance_types)
        if self.gpu:
            cpu_only = sorted({t.family if t.family in self.instance_types else t.name for t in types if not t.gpus})
            if cpu_only:
                problems.append((("instance_types",), f"{', '.join(cpu_only)} have no GPU, and this pool is gpu: true "
                                 f"(allowed: {', '.join(instance_types.known_gpu_families())} types)"))
        else:
            with_gpu = sorted({t.family if t.family in self.instance_types else t.name for t in types if t.gpus})
            if with_gpu:
                problems.append((("instance_types",), f"{', '.join(with_gpu)} are GPU types, which need the GPU image "
                                 "(allowed: set gpu: true on this pool, or use CPU types)"))
        if problems:
            raise FieldProblems(problems)
        return self

    @property
    def architecture(self) -> instance_types.Architecture:
        return instance_types.expand(self.instance_types)[0].architecture

    @property
    def job_limits(self) -> dict[str, int]:
        """What one job can get on this pool's instances (instance_types.py says why memory is less)."""
        max_vcpus, max_mem = instance_types.job_limits(self.instance_types)
        max_gpus, gpu_mem = instance_types.gpu_limits(self.instance_types)
        limits = {"max_vcpus": max_vcpus, "max_memory_mib": max_mem, "scratch_gib": self.scratch.size_gib}
        if max_gpus:
            limits.update(max_gpus=max_gpus, gpu_memory_mib=gpu_mem)
        return limits

    def holds(self, vcpus: int, memory_mib: int, gpus: int = 0) -> bool:
        return instance_types.fits_any(self.instance_types, vcpus, memory_mib, gpus)

    @property
    def queue_max_vcpus(self) -> dict[str, int]:
        # The spot queue falls back to on-demand, so it can use both environments.
        return {"spot": self.spot_max_vcpus + self.on_demand_max_vcpus, "on-demand": self.on_demand_max_vcpus}


class Compute(Pool):
    """The lab's compute: `pools`, or (the legacy form, still valid) one pool's fields, which
    then make the one pool `default`."""

    # A job that no compute environment can ever place blocks its queue; Batch cancels it after
    # these waits in RUNNABLE instead (10 minutes is Batch's floor, 24 hours its ceiling).
    cancel_unplaceable_after_minutes: int = Field(30, ge=10, le=1440, json_schema_extra=_allowed("10-1,440"))
    cancel_no_capacity_after_minutes: int = Field(360, ge=10, le=1440, json_schema_extra=_allowed("10-1,440"))
    pools: dict[str, Pool] | None = Field(None, min_length=1, json_schema_extra=_allowed(
        "pool name -> instance_types, ami_id, scratch, on_demand_max_vcpus, spot_max_vcpus, "
        "spot_allocation_strategy, gpu; leave out for one pool `default` from the fields above"))

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, value: dict[str, Pool] | None) -> dict[str, Pool] | None:
        bad = [n for n in value or {} if not POOL_NAME_RE.match(n) or len(n) > MAX_POOL_NAME]
        if bad:
            raise ValueError(f"pool name(s) {', '.join(map(repr, bad))} cannot name a job queue (allowed: lowercase "
                             f"letters, digits and single hyphens, starting with a letter, at most {MAX_POOL_NAME})")
        return value

    @model_validator(mode="after")
    def _pools_or_one_pool(self) -> Compute:
        if self.pools is None:
            return self
        problems: list[tuple[FieldPath, str]] = [
            ((name,), "is a pool's field, and compute has pools (allowed: set it in each pool under compute.pools)")
            for name in POOL_FIELDS if name in self.model_fields_set]
        # One runner tree per lab (lab_constructs/runner_image.py) is built for one architecture.
        arches = {name: pool.architecture for name, pool in self.pools.items()}
        if len(set(arches.values())) > 1:
            problems.append((("pools",), "pools mix architectures (" + ", ".join(f"{n}: {a}" for n, a in arches.items())
                             + "); allowed: one architecture per lab, since every instance mounts the same runner"))
        if problems:
            raise FieldProblems(problems)
        return self

    def __getattribute__(self, name: str):
        # With pools, the top-level pool fields are only their defaults: reading one would
        # silently describe no pool of the lab, so it is no attribute at all (read lab.pools).
        if name in POOL_FIELDS and object.__getattribute__(self, "__dict__").get("pools") is not None:
            raise AttributeError(name)
        return super().__getattribute__(name)

    @property
    def pool_map(self) -> dict[str, Pool]:
        """Every pool by name, in the lab file's order; the legacy block is the one pool `default`."""
        if self.pools is not None:
            return dict(self.pools)
        return {DEFAULT_POOL: Pool(**{name: getattr(self, name) for name in POOL_FIELDS})}

    @property
    def architecture(self) -> instance_types.Architecture:
        return next(iter(self.pool_map.values())).architecture


def pools_for(pools: dict[str, Pool], pipeline: Pipeline) -> dict[str, Pool]:
    if pipeline.pool is not None:
        return {pipeline.pool: pools[pipeline.pool]} if pipeline.pool in pools else {}
    return dict(pools)


def pipeline_pool_problems(pools: dict[str, Pool], pipelines: Mapping[str, Pipeline]) -> list[tuple[FieldPath, str]]:
    """Each pipeline's defaults must fit a pool it may be placed on: its named one, or any."""
    problems: list[tuple[FieldPath, str]] = []
    for pname, p in pipelines.items():
        if p.pool is not None and p.pool not in pools:
            problems.append((("pipelines", pname, "pool"), f"{p.pool!r} is not a pool of this lab "
                             f"(allowed: {', '.join(pools)})"))
            continue
        candidates = pools_for(pools, p)
        if p.gpus and not any(pool.gpu for pool in candidates.values()):
            where = f"pool {p.pool!r} has no GPUs" if p.pool else "the lab has no gpu: true pool"
            problems.append((("pipelines", pname, "gpus"), f"{p.gpus} GPUs asked, but {where} (allowed: 0, or "
                             "a pool with gpu: true)"))
            continue
        if not any(pool.holds(p.vcpus, p.memory_mib, p.gpus) for pool in candidates.values()):
            shapes = "; ".join(_pool_shape(name, pool) for name, pool in candidates.items())
            gpu_part = f", {p.gpus} GPUs" if p.gpus else ""
            max_vcpus = max(pool.job_limits["max_vcpus"] for pool in candidates.values())
            max_gpus = max(pool.job_limits.get("max_gpus", 0) for pool in candidates.values())
            at_fault = "vcpus" if p.vcpus > max_vcpus else "gpus" if p.gpus > max_gpus else "memory_mib"
            problems.append((
                ("pipelines", pname, at_fault),
                f"{p.vcpus} vCPUs and {p.memory_mib:,} MiB{gpu_part} fit no configured instance type "
                f"(allowed: at most, on one instance: {shapes}; memory being 95% of nominal since ECS registers "
                "less; add a bigger type or ask for less)"))
            continue
        queue_max = max(pool.queue_max_vcpus[p.default_queue] for pool in candidates.values()
                        if pool.holds(p.vcpus, p.memory_mib, p.gpus))
        if p.vcpus > queue_max:
            problems.append((("pipelines", pname, "vcpus"),
                             f"{p.vcpus} vCPUs exceed the {p.default_queue} queue's {queue_max} max vCPUs "
                             f"(allowed: at most {queue_max})"))
    return problems


def _pool_shape(name: str, pool: Pool) -> str:
    limits = pool.job_limits
    gpus = f", {limits['max_gpus']} GPUs" if limits.get("max_gpus") else ""
    where = f"pool {name}: " if name != DEFAULT_POOL else ""
    return (f"{where}{limits['max_vcpus']} vCPUs and {limits['max_memory_mib']:,} MiB{gpus} on one of "
            f"{', '.join(pool.instance_types)}")
