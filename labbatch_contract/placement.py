"""Which instance pool a job runs on: the one rule the API (jobs, array jobs, TES tasks) and the
status updater's recovery share.

A job goes to its pipeline's pool when the lab file names one; otherwise to the cheapest pool
whose instances can hold it: vCPUs, memory and GPUs on one instance type (a pool's largest
vCPU count and largest memory may belong to different types), the queue it asked for, and the
scratch it needs. Cheapest is the on-demand price of the smallest instance type of the pool that
holds the job: what Batch would start for it alone. A job no candidate pool can hold is refused
with the limit that stopped the pool that came closest, so that the message names a real limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from labbatch_contract.settings import PoolSettings

# Each limit a pool may fail, in the order they are checked; a later one means "came closer".
GPUS, VCPUS, MEMORY, QUEUE, QUEUE_VCPUS, SHAPE, SCRATCH = (
    "gpus", "vcpus", "memory_mib", "queue", "queue_vcpus", "shape", "scratch")
_ORDER = (GPUS, VCPUS, MEMORY, QUEUE, QUEUE_VCPUS, SHAPE, SCRATCH)


@dataclass(frozen=True)
class Need:
    vcpus: int
    memory_mib: int
    gpus: int = 0
    queue: str = "spot"
    scratch_gib: float = 0.0  # what the job needs on the scratch volume


@dataclass(frozen=True)
class Unplaceable:
    """No candidate pool holds the job: `limit` is what stopped `pool`, the one that came closest."""

    limit: str
    pool: str
    settings: PoolSettings


def fails(pool: PoolSettings, need: Need) -> str | None:
    """The first limit of `pool` that `need` exceeds, or None when the pool holds it."""
    limits = pool.limits
    if need.gpus > limits.max_gpus:
        return GPUS
    if need.vcpus > limits.max_vcpus:
        return VCPUS
    if need.memory_mib > limits.max_memory_mib:
        return MEMORY
    if need.queue not in pool.queues:
        return QUEUE
    if need.vcpus > pool.queue_max_vcpus.get(need.queue, 0):
        return QUEUE_VCPUS
    if pool.shapes and _cheapest_shape(pool, need) is None:
        return SHAPE
    if need.scratch_gib > pool.scratch_gib:
        return SCRATCH
    return None


def cheapest_holding(shapes: Sequence[Sequence[Any]], need: Need) -> Sequence[Any] | None:
    """The cheapest of `shapes` ((vcpus, job memory MiB, gpus, hourly price, ...) each) that holds
    `need`'s vCPUs, memory and GPUs; the first listed among equals. What Batch would start for the
    job alone: placement compares pools by its price, and the report prices a job's share of it."""
    holding = [shape for shape in shapes
               if shape[0] >= need.vcpus and shape[1] >= need.memory_mib and shape[2] >= need.gpus]
    return min(holding, key=lambda shape: shape[3]) if holding else None


def _cheapest_shape(pool: PoolSettings, need: Need) -> float | None:
    shape = cheapest_holding(pool.shapes, need)
    return shape[3] if shape else None


def hourly_cost(pool: PoolSettings, need: Need) -> float:
    """What the smallest instance of the pool that holds the job costs an hour (0: not priced)."""
    return _cheapest_shape(pool, need) or 0.0


def place(pools: Mapping[str, PoolSettings], need: Need) -> tuple[str, PoolSettings] | Unplaceable:
    """The cheapest of `pools` (the candidates, in the lab file's order) that holds `need`; ties
    go to the pool listed first. An Unplaceable when none does."""
    holding = [(hourly_cost(pool, need), index, name) for index, (name, pool) in enumerate(pools.items())
               if fails(pool, need) is None]
    if holding:
        _, _, name = min(holding)
        return name, pools[name]
    # The pool that got furthest; among those stopped by the same limit, the one with the most of
    # it, so that the refusal states the most this lab offers.
    closest = max(pools.items(), key=lambda item: (_ORDER.index(fails(item[1], need)),
                                                   _amount(item[1], fails(item[1], need), need)))
    return Unplaceable(fails(closest[1], need), closest[0], closest[1])


def _amount(pool: PoolSettings, limit: str | None, need: Need) -> float:
    limits = pool.limits
    return {GPUS: limits.max_gpus, VCPUS: limits.max_vcpus, MEMORY: limits.max_memory_mib,
            QUEUE_VCPUS: pool.queue_max_vcpus.get(need.queue, 0), SCRATCH: pool.scratch_gib}.get(limit or "", 0)


def candidates(pools: Mapping[str, PoolSettings], named: str | None) -> dict[str, PoolSettings]:
    """The pools a job may be placed on: the one its pipeline names, or all of them."""
    if named is None:
        return dict(pools)
    return {named: pools[named]} if named in pools else {}
