"""What an attempt cost, from `labbatch cost`'s own price table (labbatch/lab/data/prices.json).

The rule, as the report states it (PriceBook.rule): each job is priced on its own pool (the
record names it, or the Batch queue it ran on does), at the cheapest instance type of that pool
that holds its request (placement's rule, labbatch_contract.placement.cheapest_holding, over the
prices `labbatch cost` shows for the pool). An attempt is charged its run time (Batch's start to
stop) times its share of that type, the largest of its vCPUs, memory and GPUs over the type's (a
1-vCPU, 8 GiB job on an m6i.large, 2 vCPUs and 8 GiB, holds the whole instance; a 1-GPU job on a
4-GPU type a quarter of it), times the type's hourly price: on-demand, or on-demand less the
table's typical spot discount for attempts from the spot queue. Idle instance time, scratch
volumes and S3 are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from labbatch.client import cost

from labbatch.lab import instance_types
from labbatch.lab.config import Lab
from labbatch_contract import names, placement

SPOT, ON_DEMAND = "spot", "on-demand"


@dataclass(frozen=True)
class PricedType:
    name: str
    vcpus: int
    memory_mib: int  # the whole instance's: a job's share of it
    job_memory_mib: int  # what ECS can give one job: what decides that the type holds it
    gpus: int
    on_demand_hour: float

    @property
    def shape(self) -> tuple[int, int, int, float, str]:
        return self.vcpus, self.job_memory_mib, self.gpus, self.on_demand_hour, self.name


@dataclass(frozen=True)
class PriceBook:
    region: str
    as_of: str
    spot_discount: float
    pools: dict[str, list[PricedType]]  # in the lab file's order; the first is a job's when nothing names one
    queues: dict[str, str] = field(default_factory=dict)  # Batch queue name -> its pool
    pipeline_gpus: dict[str, int] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        return ("Cost of an attempt = run hours x its share of the cheapest instance type of its job's pool that "
                "holds its request (the largest of vCPUs, memory and GPUs asked for over the type's) x that type's "
                f"hourly price: on-demand, or on-demand less a typical {self.spot_discount:.0%} from the spot queue. "
                f"Pools: {'; '.join(self._pool_line(name) for name in self.pools)}. {self.region}, prices as of "
                f"{self.as_of} (labbatch/lab/data/prices.json, as `labbatch cost`). Idle instance time, scratch volumes "
                "and S3 are not included.")

    def _pool_line(self, name: str) -> str:
        return f"{name} ({', '.join(f'{t.name} ${t.on_demand_hour:g}/h' for t in self.pools[name])})"

    def pool_of(self, job: Mapping[str, Any]) -> str:
        named = job.get("pool")
        if named in self.pools:
            return named
        return self.queues.get(job.get("job_queue") or "", next(iter(self.pools)))

    def instance_for(self, pool: str, vcpus: float, memory_mib: float, gpus: int) -> PricedType:
        types = self.pools[pool]
        need = placement.Need(int(-(-vcpus // 1)), int(memory_mib), gpus)
        held = placement.cheapest_holding([t.shape for t in types], need)
        # A request no type holds (it could not have run) is priced at the pool's dearest type.
        name = held[4] if held else max(types, key=lambda t: t.on_demand_hour).name
        return next(t for t in types if t.name == name)

    def hour_price(self, instance: PricedType, market: str | None) -> float:
        return instance.on_demand_hour * ((1 - self.spot_discount) if market == SPOT else 1)


def price_book(lab: Lab) -> PriceBook:
    prices = cost.load_prices()
    region_name = lab.region or cost.DEFAULT_REGION
    model = cost.per_job_model(lab, region_name, cost.region_prices(prices, region_name))
    pools = {}
    for pool in model["pools"]:
        pools[pool["pool"]] = [_priced(row) for row in pool["instances"]]
    queues = {names.pool_job_queue(lab.name, name, queue): name
              for name, pool in lab.pools.items() for queue in pool.queue_max_vcpus}
    return PriceBook(region=region_name, as_of=prices["as_of"],
                     spot_discount=prices["regions"][region_name]["usage"]["spot_typical_discount"],
                     pools=pools, queues=queues,
                     pipeline_gpus={name: pipeline.gpus for name, pipeline in lab.pipelines.items()})


def _priced(row: Mapping[str, Any]) -> PricedType:
    facts = instance_types.lookup(row["instance_type"])
    return PricedType(facts.name, facts.vcpus, facts.memory_mib, facts.job_memory_mib, facts.gpus,
                      row["on_demand_hour"])


def share(instance: PricedType, vcpus: float, memory_mib: float, gpus: int) -> float:
    """The part of the instance a request holds: the largest of its vCPUs, memory and GPUs over the type's."""
    parts = [float(vcpus) / instance.vcpus, float(memory_mib) / instance.memory_mib]
    if instance.gpus:
        parts.append(gpus / instance.gpus)
    return max(parts)


def attempt_cost(book: PriceBook, row: Mapping[str, Any], *, vcpus: float | None = None,
                 memory_mib: float | None = None, market: str | None = None) -> float:
    """An attempt's cost at its own request and market, or at the ones given. `row` names its job's
    pool and GPUs (summary.py copies them from the job)."""
    run_s = row.get("run_s") or 0.0
    vcpus = vcpus if vcpus is not None else row.get("vcpus") or 1
    memory_mib = memory_mib if memory_mib is not None else row.get("memory_mib") or 0
    market = market or row.get("market") or ON_DEMAND
    gpus = int(row.get("gpus") or 0)
    instance = book.instance_for(row.get("pool") or book.pool_of(row), vcpus, memory_mib, gpus)
    return run_s / 3600 * share(instance, vcpus, memory_mib, gpus) * book.hour_price(instance, market)
