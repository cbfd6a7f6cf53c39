"""Instance pools in the lab file: `compute.pools`, GPU pools and the pipelines placed on them."""

from __future__ import annotations

import copy

import pytest
import yaml

from labbatch.lab import instance_types
from labbatch.lab.api_settings import handler_settings
from labbatch.lab.batch_layout import layout
from labbatch.lab.config import DEFAULT_POOL
from labbatch.lab.loader import LabConfigError, check_shared_quotas, parse_lab

from tests.cdk.conftest import pools_data
from tests.conftest import LABS_DIR

EXAMPLE = yaml.safe_load((LABS_DIR / "example.yaml").read_text())


def problems_of(data: dict) -> list[str]:
    with pytest.raises(LabConfigError) as exc:
        parse_lab(data, "labs/bad.yaml")
    return exc.value.problems


def test_the_legacy_compute_block_is_one_pool_named_default():
    lab = parse_lab(copy.deepcopy(EXAMPLE), "example.yaml")
    assert list(lab.pools) == [DEFAULT_POOL]
    assert lab.pools[DEFAULT_POOL].instance_types == EXAMPLE["compute"]["instance_types"]
    assert lab.pools[DEFAULT_POOL].spot_max_vcpus == EXAMPLE["compute"]["spot_max_vcpus"]
    # ...and its settings carry no pools: a one-pool lab's handler settings are what they were.
    assert "pools" not in handler_settings(lab, "123456789012", "us-east-1")


def test_pools_each_get_spot_and_on_demand_queues_with_stable_names():
    lab = parse_lab(pools_data(), "pools.yaml")
    plan = layout(lab)
    assert {(q.pool, q.queue): q.name for q in plan.queues} == {
        ("default", "spot"): "labbatch-pools-spot", ("default", "on-demand"): "labbatch-pools-on-demand",
        # highmem has no spot environment: its spot queue is its on-demand environment alone.
        ("highmem", "spot"): "labbatch-pools-highmem-spot", ("highmem", "on-demand"): "labbatch-pools-highmem-on-demand",
        ("gpu", "spot"): "labbatch-pools-gpu-spot", ("gpu", "on-demand"): "labbatch-pools-gpu-on-demand"}
    assert {(e.pool, e.kind) for e in plan.environments} == {
        ("default", "spot"), ("default", "on-demand"), ("highmem", "on-demand"), ("gpu", "spot"), ("gpu", "on-demand")}
    basecall = next(d for d in plan.job_definitions if d.pipeline == "basecall")
    assert basecall.gpus == 1


def test_pool_settings_give_each_pools_limits_gpus_and_priced_shapes():
    lab = parse_lab(pools_data(), "pools.yaml")
    settings = handler_settings(lab, "123456789012", "us-east-1")
    pools = settings["pools"]
    assert list(pools) == ["default", "highmem", "gpu"]
    assert pools["gpu"]["limits"]["max_gpus"] == 4 and pools["gpu"]["gpu"] is True
    assert pools["highmem"]["limits"]["max_memory_mib"] == instance_types.lookup("r6i.16xlarge").job_memory_mib
    assert pools["highmem"]["scratch_gib"] == 500
    # g5.xlarge: 4 vCPUs, 95% of 16 GiB, one GPU, its on-demand price.
    assert [4, int(16 * 1024 * 0.95), 1, 1.006] in [list(s) for s in pools["gpu"]["shapes"]]
    assert settings["pipelines"]["basecall"]["pool"] == "gpu" and settings["pipelines"]["basecall"]["gpus"] == 1


def test_a_family_name_means_every_size_of_it():
    data = copy.deepcopy(EXAMPLE)
    data["compute"]["instance_types"] = ["c6i"]
    lab = parse_lab(data, "example.yaml")
    assert lab.pools[DEFAULT_POOL].job_limits["max_vcpus"] == 64


def test_pool_fields_beside_pools_are_refused_naming_the_field():
    data = pools_data()
    data["compute"]["spot_max_vcpus"] = 8
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: compute.spot_max_vcpus: is a pool's field, and compute has pools")


@pytest.mark.parametrize(("pool", "types", "expected"), [
    ("gpu", ["g5.xlarge", "m6i.large"], "compute.pools.gpu.instance_types: m6i.large have no GPU, and this pool is gpu: true"),
    ("cpu", ["g5.xlarge"], "compute.pools.cpu.instance_types: g5.xlarge are GPU types, which need the GPU image"),
    ("cpu", ["g9.xlarge"], "compute.pools.cpu.instance_types: unknown instance type(s) g9.xlarge"),
])
def test_gpu_and_cpu_types_belong_to_their_kind_of_pool(pool, types, expected):
    data = pools_data()
    data["compute"]["pools"][pool] = {"instance_types": types, "gpu": pool == "gpu"}
    assert any(p.startswith(f"labs/bad.yaml: {expected}") for p in problems_of(data)), problems_of(data)


def test_a_bad_pool_name_is_refused():
    data = pools_data()
    data["compute"]["pools"]["Big_Pool"] = {"instance_types": ["r6i.large"]}
    assert any("compute.pools: pool name(s) 'Big_Pool' cannot name a job queue" in p for p in problems_of(data))


def test_pools_of_two_architectures_are_refused():
    data = pools_data()
    data["compute"]["pools"]["arm"] = {"instance_types": ["m7g.large"]}
    assert any("compute.pools: pools mix architectures" in p for p in problems_of(data))


def test_a_pipeline_naming_an_unknown_pool_is_refused_with_the_pools():
    data = pools_data()
    data["pipelines"]["align"]["pool"] = "huge"
    assert "labs/bad.yaml: pipelines.align.pool: 'huge' is not a pool of this lab (allowed: default, highmem, gpu)" \
        in problems_of(data)


def test_a_gpu_pipeline_without_a_gpu_pool_is_refused():
    data = copy.deepcopy(EXAMPLE)
    data["pipelines"]["align"]["gpus"] = 1
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: pipelines.align.gpus: 1 GPUs asked, but the lab has no gpu: true pool")


def test_a_pipeline_asking_more_gpus_than_its_pool_has_is_refused_naming_gpus():
    data = pools_data()
    data["pipelines"]["basecall"]["gpus"] = 8
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: pipelines.basecall.gpus: 4 vCPUs and 14,000 MiB, 8 GPUs fit no")
    assert "pool gpu: 48 vCPUs" in problem and "4 GPUs" in problem


def test_a_pipeline_fitting_only_another_pool_than_its_own_is_refused():
    data = pools_data()
    data["pipelines"]["align"].update(pool="default", memory_mib=100_000)
    [problem] = problems_of(data)
    assert problem.startswith("labs/bad.yaml: pipelines.align.memory_mib: 2 vCPUs and 100,000 MiB fit no")
    # Without the pool named, the memory pool holds it.
    del data["pipelines"]["align"]["pool"]
    parse_lab(data, "pools.yaml")


def test_every_problem_of_a_pools_file_is_reported_in_one_pass():
    data = pools_data()
    data["compute"]["pools"]["gpu"]["scratch"] = {"size_gib": 0}
    data["pipelines"]["basecall"]["gpus"] = 99
    fields = {p.split(": ")[1] for p in problems_of(data)}
    assert {"compute.pools.gpu.scratch.size_gib", "pipelines.basecall.gpus"} <= fields


def test_shared_quotas_count_every_pool():
    base = pools_data()  # 3 pools: 5 compute environments, 6 queues
    base.update(account="123456789012", region="us-east-1", availability_zones=["us-east-1a"])
    labs = [parse_lab(dict(copy.deepcopy(base), name=f"lab{i}"), f"lab{i}.yaml") for i in range(9)]
    [problem] = check_shared_quotas(labs)
    assert "9 labs with 27 pools need 45 compute environments and 54 job queues" in problem
    assert not check_shared_quotas(labs[:8])


def test_a_pools_lab_has_no_top_level_pool_fields_to_misread():
    lab = parse_lab(pools_data(), "pools.yaml")
    # Their defaults would describe no pool of the lab: code reads lab.pools instead.
    with pytest.raises(AttributeError):
        lab.compute.instance_types
    assert lab.compute.architecture == "x86_64" and lab.compute.cancel_unplaceable_after_minutes == 30
