"""On-demand hourly prices of instance types, from labbatch/lab/data/prices.json (dated there).

CPU types are priced per vCPU-hour of their family (their sizes follow one ladder); GPU types
per instance, as sold. Placement (the cheapest pool that holds a job) and `labbatch cost` both
read these, so the pool a job is sent to and the price the CLI shows agree.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from labbatch.lab.instance_types import InstanceType

DEFAULT_REGION = "us-east-1"


class NoPrice(LookupError):
    pass


@lru_cache(maxsize=1)
def prices_table() -> dict:
    """data/prices.json, read once: what `labbatch cost`, reports and the lab model price with."""
    return json.loads(resources.files("labbatch.lab").joinpath("data/prices.json").read_text())


def on_demand_hour(instance: InstanceType, region: str | None) -> float:
    """USD an hour on demand in `region` (the default Region's when the lab names none)."""
    regions = prices_table()["regions"]
    table = regions.get(region or DEFAULT_REGION)
    if table is None:
        raise NoPrice(f"no prices for {region} in labbatch/lab/data/prices.json (have: {', '.join(sorted(regions))})")
    if instance.gpus:
        price = table.get("on_demand_gpu_instance_hour", {}).get(instance.name)
        if price is None:
            raise NoPrice(f"no price for {instance.name} in {region or DEFAULT_REGION} in labbatch/lab/data/prices.json")
        return price
    vcpu_hour = table["on_demand_vcpu_hour"].get(instance.family)
    if vcpu_hour is None:
        raise NoPrice(f"no price for instance family {instance.family} in labbatch/lab/data/prices.json")
    return vcpu_hour * instance.vcpus
