"""The report prices each job on its own pool: a lab with a small default pool, a memory pool and
a GPU pool, jobs on each, every expected cost computed here from prices.json and the instance
sizes written out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labbatch.lab.loader import parse_lab
from labbatch.client.report import costing, summary
from labbatch.client.report.gather import Gathered
from tests.cdk.conftest import pools_data

ROOT = Path(__file__).resolve().parents[2]
REGION = json.loads((ROOT / "labbatch" / "lab" / "data" / "prices.json").read_text())["regions"]["us-east-1"]
SPOT_SHARE = 1 - REGION["usage"]["spot_typical_discount"]
# pools_data(): default is labs/example.yaml's m6i.large..2xlarge, highmem every r6i size, gpu g5.xlarge
# and g5.12xlarge; its name is `pools`, so the default pool's queues are labbatch-pools-spot/-on-demand.
LAB = parse_lab(pools_data(), "pools.yaml")


def fig(run_s: float, *, vcpus: int, memory_mib: int, market: str) -> dict:
    return {"attempt": 1, "started_at": "2026-12-01T10:00:00.000000Z", "stopped_at": "2026-12-01T11:00:00.000000Z",
            "run_s": run_s, "vcpus": vcpus, "memory_mib": memory_mib, "market": market, "exit_code": 0}


@pytest.fixture
def found() -> Gathered:
    g = Gathered()
    # An older record: no `pool`, only the Batch queue it ran on (the default pool's spot queue).
    g.jobs["j-small"] = {"job_id": "j-small", "pipeline": "fastq-stats", "status": "SUCCEEDED",
                         "job_queue": "labbatch-pools-spot",
                         "figures": [fig(600, vcpus=1, memory_mib=2048, market="spot")]}
    g.jobs["j-star"] = {"job_id": "j-star", "pipeline": "fastq-stats", "status": "SUCCEEDED", "pool": "highmem",
                        "job_queue": "labbatch-pools-highmem-on-demand",
                        "figures": [fig(1800, vcpus=2, memory_mib=60_000, market="on-demand")]}
    # A GPU job whose record predates `gpus` on records: its pipeline's (basecall: 1) count.
    g.jobs["j-dorado"] = {"job_id": "j-dorado", "pipeline": "basecall", "status": "SUCCEEDED", "pool": "gpu",
                          "figures": [fig(3600, vcpus=4, memory_mib=14_000, market="on-demand")]}
    # Doctor's GPU canary: a CPU pipeline with one GPU, on the GPU pool, on spot.
    g.jobs["j-canary"] = {"job_id": "j-canary", "pipeline": "fastq-stats", "status": "SUCCEEDED", "pool": "gpu",
                          "gpus": 1, "figures": [fig(60, vcpus=1, memory_mib=2048, market="spot")]}
    return g


def expected() -> dict[str, float]:
    m6i, r6i = REGION["on_demand_vcpu_hour"]["m6i"], REGION["on_demand_vcpu_hour"]["r6i"]
    g5_xlarge = REGION["on_demand_gpu_instance_hour"]["g5.xlarge"]
    return {
        # m6i.large (2 vCPUs, 8 GiB) holds 1 vCPU and 2 GiB: half of it (its vCPUs), at m6i's price, on spot.
        "j-small": 600 / 3600 * (1 / 2) * (2 * m6i) * SPOT_SHARE,
        # r6i.2xlarge (8 vCPUs, 64 GiB) is the smallest r6i that holds 60,000 MiB: 60,000 / 65,536 of it.
        "j-star": 1800 / 3600 * (60_000 / 65_536) * (8 * r6i),
        # g5.xlarge (4 vCPUs, 16 GiB, 1 GPU) holds 4 vCPUs, 14,000 MiB and 1 GPU: all of it (its vCPUs and GPU).
        "j-dorado": 1.0 * g5_xlarge,
        # The canary's one GPU is the g5.xlarge's one: the whole instance, on spot.
        "j-canary": 60 / 3600 * 1.0 * g5_xlarge * SPOT_SHARE,
    }


def test_each_job_is_priced_at_its_own_pools_cheapest_holding_type(found):
    report = summary.build(found, costing.price_book(LAB), lab_file="pools.yaml")

    costs = {s.job_id: s.cost_usd for s in report.samples}
    assert costs == pytest.approx(expected(), rel=1e-9)
    assert {a["job_id"]: a["pool"] for a in report.attempts} == {
        "j-small": "default", "j-star": "highmem", "j-dorado": "gpu", "j-canary": "gpu"}
    assert report.costs()["total_usd"] == pytest.approx(sum(expected().values()), rel=1e-9)


def test_the_memory_job_would_have_been_priced_wrongly_at_the_first_pools_type(found):
    # What the report did before pools: every job at the first pool's first type (m6i, 4 GiB per vCPU).
    report = summary.build(found, costing.price_book(LAB), lab_file="pools.yaml")
    star = next(s for s in report.samples if s.job_id == "j-star")
    at_m6i = 1800 / 3600 * max(2, 60_000 / 1024 / 4) * REGION["on_demand_vcpu_hour"]["m6i"]

    assert star.cost_usd != pytest.approx(at_m6i, rel=1e-3)


def test_the_stated_rule_names_every_pool_and_its_prices():
    rule = costing.price_book(LAB).rule

    assert "cheapest instance type of its job's pool that holds its request" in rule
    assert f"g5.xlarge ${REGION['on_demand_gpu_instance_hour']['g5.xlarge']:g}/h" in rule
    assert all(f"{pool} (" in rule for pool in ("default", "highmem", "gpu"))
