"""What an attempt cost, from `labbatch cost`'s own price table (labbatch/data/prices.json).

The rule, as the report states it (PriceBook.rule): an attempt is charged its run time (Batch's
start to stop) times the vCPUs it reserved, where a request reserves the larger of its vCPUs and
its memory over the instance family's GiB per vCPU (a 1-vCPU, 8 GiB job on m6i, 4 GiB per vCPU,
holds 2 vCPUs' worth of instance), times the family's vCPU-hour price: on-demand, or on-demand
less the table's typical spot discount for attempts from the spot queue. The family is the lab
file's first instance type's. Idle instance time, scratch volumes and S3 are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from labbatch import cost, instance_types
from labbatch.config import Lab

SPOT, ON_DEMAND = "spot", "on-demand"


@dataclass(frozen=True)
class PriceBook:
    region: str
    as_of: str
    instance_type: str
    gib_per_vcpu: float
    vcpu_hour_on_demand: float
    vcpu_hour_spot: float
    spot_discount: float

    @property
    def rule(self) -> str:
        return (f"Cost of an attempt = run hours x reserved vCPUs x vCPU-hour price. Reserved vCPUs are the larger "
                f"of the vCPUs asked for and the memory asked for / {self.gib_per_vcpu:g} GiB per vCPU "
                f"({self.instance_type}'s family). vCPU-hour: ${self.vcpu_hour_on_demand:.5f} on-demand, "
                f"${self.vcpu_hour_spot:.5f} spot (on-demand less a typical {self.spot_discount:.0%}), "
                f"{self.region}, prices as of {self.as_of} (labbatch/data/prices.json, as `labbatch cost`). "
                "Idle instance time, scratch volumes and S3 are not included.")

    def vcpu_hour(self, market: str | None) -> float:
        return self.vcpu_hour_spot if market == SPOT else self.vcpu_hour_on_demand


def price_book(lab: Lab) -> PriceBook:
    prices = cost.load_prices()
    region_name = lab.region or cost.DEFAULT_REGION
    model = cost.per_job_model(lab, region_name, cost.region_prices(prices, region_name))
    # The first pool's first instance type prices every attempt (a record does not say its pool yet).
    first = model["pools"][0]["instances"][0]
    facts = instance_types.lookup(first["instance_type"])
    return PriceBook(region=region_name, as_of=prices["as_of"], instance_type=first["instance_type"],
                     gib_per_vcpu=facts.memory_mib / 1024 / facts.vcpus,
                     vcpu_hour_on_demand=first["vcpu_hour_on_demand"], vcpu_hour_spot=first["vcpu_hour_spot_typical"],
                     spot_discount=prices["regions"][region_name]["usage"]["spot_typical_discount"])


def reserved_vcpus(vcpus: float, memory_mib: float, gib_per_vcpu: float) -> float:
    return max(float(vcpus), memory_mib / 1024 / gib_per_vcpu)


def attempt_cost(book: PriceBook, row: Mapping[str, Any], *, vcpus: float | None = None,
                 memory_mib: float | None = None, market: str | None = None) -> float:
    """An attempt's cost at its own request and market, or at the ones given."""
    run_s = row.get("run_s") or 0.0
    vcpus = vcpus if vcpus is not None else row.get("vcpus") or 1
    memory_mib = memory_mib if memory_mib is not None else row.get("memory_mib") or 0
    market = market or row.get("market") or ON_DEMAND
    return run_s / 3600 * reserved_vcpus(vcpus, memory_mib, book.gib_per_vcpu) * book.vcpu_hour(market)
