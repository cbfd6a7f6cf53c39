"""GPU instance prices (labbatch/lab/data/prices.json): every Region with CPU prices prices the GPU
types too, and a type with no checked figure there is an explicit "no price", never a guess."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from labbatch.client import cost

from labbatch.lab import instance_types
from labbatch.lab.instance_prices import NoPrice, on_demand_hour
from labbatch.lab.loader import LabConfigError, parse_lab
from tests.cdk.conftest import pools_data

PRICES = json.loads((Path(__file__).resolve().parents[2] / "labbatch" / "lab" / "data" / "prices.json").read_text())
# Left out on purpose (prices.json says so): no figure that could be checked.
NOT_PRICED = {"eu-west-1": {"g6e.xlarge", "g6e.2xlarge", "g6e.4xlarge", "g6e.8xlarge", "g6e.12xlarge",
                            "g6e.16xlarge", "g6e.24xlarge", "g6e.48xlarge", "p5.48xlarge"}}


def test_every_region_with_cpu_prices_prices_the_gpu_types_but_the_ones_said_missing():
    every_gpu_type = set(PRICES["regions"]["us-east-1"]["on_demand_gpu_instance_hour"])
    for region, table in PRICES["regions"].items():
        assert table["on_demand_vcpu_hour"], region
        priced = set(table.get("on_demand_gpu_instance_hour") or {})
        assert priced == every_gpu_type - NOT_PRICED.get(region, set()), region
        assert all(price > 0 for price in table["on_demand_gpu_instance_hour"].values())
    assert "g6e" in PRICES["missing_gpu_prices"] and "eu-west-1" in PRICES["missing_gpu_prices"]


@pytest.mark.parametrize("region, name", [(r, n) for r, names in NOT_PRICED.items() for n in sorted(names)][:2])
def test_a_gpu_type_without_a_price_in_a_region_says_so(region, name):
    with pytest.raises(NoPrice, match=f"^no price for {name} in {region} in labbatch/lab/data/prices.json$"):
        on_demand_hour(instance_types.lookup(name), region)


def test_a_gpu_pool_without_prices_in_its_region_is_refused_naming_the_pool_type_and_region():
    # Placement compares pools by price: a lab whose pool has no price is refused at load, not guessed.
    data = copy.deepcopy(pools_data())
    data["region"] = "eu-west-1"
    data["compute"]["pools"]["gpu"]["instance_types"] = ["g6e.xlarge"]

    with pytest.raises(LabConfigError) as refused:
        parse_lab(data, "pools.yaml")

    assert str(refused.value.problems[0]).startswith(
        "pools.yaml: compute.pools.gpu.instance_types: no price for g6e.xlarge in eu-west-1")


def test_labbatch_cost_of_a_gpu_pool_in_a_priced_region_has_gpu_hours():
    data = copy.deepcopy(pools_data())
    data["region"] = "eu-west-1"
    lab = parse_lab(data, "pools.yaml")

    model = cost.per_job_model(lab, "eu-west-1", cost.region_prices(cost.load_prices(), "eu-west-1"))
    gpu = next(pool for pool in model["pools"] if pool["pool"] == "gpu")
    g5 = next(row for row in gpu["instances"] if row["instance_type"] == "g5.xlarge")
    assert g5["on_demand_hour"] == PRICES["regions"]["eu-west-1"]["on_demand_gpu_instance_hour"]["g5.xlarge"]
    assert g5["gpu_hour_on_demand"] == g5["on_demand_hour"]  # one GPU
