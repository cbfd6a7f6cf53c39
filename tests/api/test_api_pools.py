"""Placement at submission: every job (plain, array, TES task) goes to its pipeline's pool or to the
cheapest pool whose instances hold it; a job no pool holds is refused naming the limit; recovery
moves a job that needs more memory to a pool that holds it, and keeps spot -> on-demand in its pool."""

from __future__ import annotations

import copy
import json

import pytest

from tests.api_lab import READS, READS_B, SESSION, REGION, ACCOUNT, api_clients, capture_calls
from labbatch.lab.api_settings import handler_settings
from labbatch.lab.loader import parse_lab
from labbatch_contract import gpu_check, placement
from labbatch_contract.settings import LabSettings, PoolSettings
from tests.cdk.conftest import pools_data

# The pools lab of the template tests, named `example` so that its buckets, table and job
# definitions are the ones the `lab` fixture creates.
POOLS_LAB = parse_lab(dict(pools_data(), name="example"), "example.yaml")
POOLS = handler_settings(POOLS_LAB, ACCOUNT, REGION)
QUEUES = {(pool, kind): name for pool, settings in POOLS["pools"].items() for kind, name in settings["queues"].items()}
MEMORY_POOL_MAX = POOLS["pools"]["highmem"]["limits"]["max_memory_mib"]


@pytest.fixture
def pools_lab(lab, monkeypatch):
    """The `lab` fixture's moto AWS with every pool's queues and the GPU pipeline's job definition."""
    from labbatch_api import handler as job_api
    batch = SESSION.client("batch", region_name=REGION)
    environment = batch.describe_compute_environments()["computeEnvironments"][0]["computeEnvironmentArn"]
    existing = {q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]}
    for name in set(QUEUES.values()) - existing:
        batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1,
                               computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}])
    basecall = POOLS["pipelines"]["basecall"]
    batch.register_job_definition(jobDefinitionName=basecall["job_definition"], type="container", containerProperties={
        "image": "ontresearch/dorado:latest", "command": ["dorado"],
        "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "14000"},
                                 {"type": "GPU", "value": "1"}]})
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(POOLS, separators=(",", ":")))
    job_api.runtime.cache_clear()
    return lab


def queue_of(lab, answer) -> str:
    assert answer.status == 202, answer.body
    [job] = lab.batch.describe_jobs(jobs=[answer.body["batch_job_id"]])["jobs"]
    return job["jobQueue"].rsplit("/", 1)[-1]


@pytest.mark.parametrize("request_body, pool", [
    ({"pipeline": "fastq-stats"}, "default"),  # 1 vCPU, 2 GiB: an m6i.large is the cheapest that holds it
    ({"pipeline": "fastq-stats", "memory_mib": 100_000}, "highmem"),  # only r6i holds 100,000 MiB
    ({"pipeline": "fastq-stats", "vcpus": 48}, "highmem"),  # r6i.12xlarge is cheaper than g5.12xlarge
    ({"pipeline": "basecall"}, "gpu"),  # its pipeline names the GPU pool
])
def test_placement_picks_the_cheapest_pool_that_holds_each_job(pools_lab, request_body, pool):
    answer = pools_lab.submit({**request_body, "inputs": [READS]})

    assert queue_of(pools_lab, answer) == QUEUES[(pool, "spot")]
    record = pools_lab.call("GET", f"/jobs/{answer.body['job_id']}").body
    assert record["queue"] == "spot"


def test_an_array_job_is_placed_by_the_same_rule(pools_lab):
    answer = pools_lab.submit({"pipeline": "fastq-stats", "memory_mib": 100_000, "samples": [
        {"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS_B]}]})

    assert queue_of(pools_lab, answer) == QUEUES[("highmem", "spot")]


def test_a_job_no_pool_holds_is_refused_naming_the_limit_and_the_closest_pool(pools_lab):
    answer = pools_lab.submit({"pipeline": "fastq-stats", "inputs": [READS], "memory_mib": MEMORY_POOL_MAX + 1})

    assert answer.status == 422 and answer.error["code"] == "memory_too_large"
    assert answer.error["details"] == {"field": "memory_mib", "asked": MEMORY_POOL_MAX + 1,
                                       "available": MEMORY_POOL_MAX, "pool": "highmem"}
    assert f"pool highmem's instances ({MEMORY_POOL_MAX} MiB" in answer.error["message"]
    pools_lab.assert_nothing_created()


def test_a_pipeline_that_names_its_pool_is_never_placed_elsewhere(pools_lab):
    gpu_max = POOLS["pools"]["gpu"]["limits"]["max_memory_mib"]
    answer = pools_lab.submit({"pipeline": "basecall", "inputs": [READS], "memory_mib": gpu_max + 1})

    # The memory pool would hold it, but it has no GPUs and basecall names the GPU pool.
    assert answer.status == 422 and answer.error["code"] == "memory_too_large"
    assert answer.error["details"]["pool"] == "gpu"


def test_a_gpu_job_no_gpu_pool_can_hold_is_refused_naming_gpus():
    settings = copy.deepcopy(POOLS)
    settings["pools"]["gpu"]["limits"]["max_gpus"] = 0
    pools = LabSettings.model_validate(settings).pool_map()

    placed = placement.place(placement.candidates(pools, "gpu"), placement.Need(4, 14_000, 1, "spot"))

    assert isinstance(placed, placement.Unplaceable) and (placed.limit, placed.pool) == ("gpus", "gpu")


def test_vcpus_and_memory_must_fit_one_instance_type_not_two():
    # A made-up pool of a two-core type with memory and a many-core type without: its limits are
    # each met by one of them, but no instance holds 64 vCPUs and 7,000 MiB together.
    pool = PoolSettings(queues={"spot": "q"}, queue_max_vcpus={"spot": 128}, scratch_gib=100,
                        limits={"max_vcpus": 64, "max_memory_mib": 7782},
                        shapes=[(2, 7782, 0, 0.1), (64, 1000, 0, 1.0)])

    assert placement.fails(pool, placement.Need(64, 7000)) == placement.SHAPE
    assert placement.fails(pool, placement.Need(2, 7000)) is None


def test_cheapest_is_by_the_smallest_instance_that_holds_the_job_ties_to_the_first_pool():
    pools = LabSettings.model_validate(POOLS).pool_map()
    assert placement.place(pools, placement.Need(2, 4000))[0] == "default"
    # 2 vCPUs and 15,000 MiB: an r6i.large (2 x $0.063) costs less than an m6i.xlarge (4 x $0.048).
    assert placement.place(pools, placement.Need(2, 15_000))[0] == "highmem"
    same = {"a": pools["default"], "b": pools["default"]}
    assert placement.place(same, placement.Need(1, 1000))[0] == "a"


def test_tes_tasks_are_placed_by_the_same_rule():
    from labbatch_api import tes_models as m
    from labbatch_api.tes_resources import task_resources

    settings = LabSettings.model_validate(POOLS)
    task = m.TesTaskRequest.model_validate({"executors": [{"image": "quay.io/biocontainers/x", "command": ["x"]}],
                                            "resources": {"cpu_cores": 2, "ram_gb": 100, "preemptible": True}})
    placed = task_resources(task, settings)
    assert (placed.pool, placed.job_queue) == ("highmem", QUEUES[("highmem", "spot")])

    small = task.model_copy(update={"resources": m.TesResources(cpu_cores=1, ram_gb=1, preemptible=False)})
    assert task_resources(small, settings).job_queue == QUEUES[("default", "on-demand")]


# --- recovery across pools --------------------------------------------------------------------

def plan(record: dict, failure: str, pool: str, named: str | None = None):
    from labbatch_status import recovery
    pools = LabSettings.model_validate(POOLS).pool_map()
    return recovery.plan(record, failure, enabled={}, pools=pools, pool=pool,
                         movable_to=placement.candidates(pools, named), status_reason=None, attempts=1)


def test_more_memory_than_the_pool_holds_moves_to_a_pool_that_holds_it():
    default_max = POOLS["pools"]["default"]["limits"]["max_memory_mib"]
    decision = plan({"vcpus": 2, "memory_mib": default_max - 100, "queue": "spot", "pipeline": "align"},
                    "out_of_memory", "default")

    assert decision.pool == "highmem" and decision.queue == "spot" and decision.memory_mib > default_max
    assert "more than pool default holds" in decision.reason and "on pool highmem" in decision.reason


def test_more_memory_within_the_pool_stays_there():
    decision = plan({"vcpus": 1, "memory_mib": 2048, "queue": "spot", "pipeline": "align"}, "out_of_memory", "default")
    assert (decision.pool, decision.memory_mib) == ("default", 3072)


def test_more_memory_than_any_allowed_pool_holds_fails_with_that_reason():
    from labbatch_status import recovery
    gpu_max = POOLS["pools"]["gpu"]["limits"]["max_memory_mib"]
    refusal = plan({"vcpus": 4, "memory_mib": gpu_max - 10, "queue": "spot", "pipeline": "basecall"},
                   "out_of_memory", "gpu", named="gpu")

    assert isinstance(refusal, recovery.Refusal)
    assert f"more than pool gpu holds ({gpu_max:,} MiB), and its pipeline may use no other pool" in refusal.reason


def test_spot_to_on_demand_stays_within_the_pool():
    decision = plan({"vcpus": 4, "memory_mib": 100_000, "queue": "spot", "pipeline": "align"},
                    "spot_reclaimed", "highmem")
    assert (decision.pool, decision.queue) == ("highmem", "on-demand")


def test_the_status_updater_resubmits_on_the_pool_it_planned(pools_lab):
    from tests.status.test_failures_recovery import fail, view

    # 8 vCPUs and 25,000 MiB: an m6i.2xlarge ($0.384/h) is cheaper than an r6i.2xlarge ($0.504/h);
    # 1.5x the memory is more than an m6i.2xlarge holds.
    answer = pools_lab.submit({"pipeline": "fastq-stats", "inputs": [READS], "vcpus": 8, "memory_mib": 25_000})
    assert queue_of(pools_lab, answer) == QUEUES[("default", "spot")]

    recovered = fail(pools_lab, answer.body, "out_of_memory")

    assert recovered["recovery"]["submitted"], recovered
    new = view(pools_lab, recovered["recovery"]["job_id"])
    [batch_job] = pools_lab.batch.describe_jobs(jobs=[new["batch_job_id"]])["jobs"]
    assert batch_job["jobQueue"].endswith("/" + QUEUES[("highmem", "spot")])


# --- what the API shows of pools ------------------------------------------------------------

def test_get_pipelines_shows_pools_and_each_pipelines_limits_on_its_pools(pools_lab):
    body = pools_lab.call("GET", "/pipelines").body

    assert [p["name"] for p in body["pools"]] == ["default", "highmem", "gpu"]
    gpu = next(p for p in body["pools"] if p["name"] == "gpu")
    assert gpu["gpu"] and gpu["limits"]["max_gpus"] == 4 and gpu["queues"]["spot"] == QUEUES[("gpu", "spot")]
    pipelines = {p["name"]: p for p in body["pipelines"]}
    assert pipelines["basecall"]["pool"] == "gpu" and pipelines["basecall"]["defaults"]["gpus"] == 1
    assert pipelines["basecall"]["limits"] == {**{k: v for k, v in gpu["limits"].items()
                                                  if k in ("max_vcpus", "max_memory_mib", "scratch_gib", "max_gpus")}}
    # A pipeline that names no pool can get what the largest pool gives.
    assert pipelines["fastq-stats"]["pool"] is None
    assert pipelines["fastq-stats"]["limits"]["max_memory_mib"] == MEMORY_POOL_MAX


def test_get_lab_lists_every_pools_queues_and_limits(pools_lab):
    body = pools_lab.call("GET", "/lab").body

    assert {(q["pool"], q["queue"]): q["name"] for q in body["queues"]} == QUEUES
    assert all(q["status"] != "MISSING" for q in body["queues"])
    assert [p["name"] for p in body["pools"]] == ["default", "highmem", "gpu"]


def test_why_explains_a_waiting_job_in_terms_of_its_pool():
    from test_api_waiting import NOW, FakeBatch, batch_job, environment, queue
    from labbatch_api.waiting import explain

    highmem_spot = QUEUES[("highmem", "spot")]
    batch = FakeBatch([batch_job("b-1", queue_name=highmem_spot, vcpus=4, memory=100_000,
                                 reason="MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated")],
                      queues=[queue(highmem_spot, ["highmem-od"])],
                      environments=[environment("highmem-od", kind="EC2", max_vcpus=2)])
    record = {"status": "RUNNABLE", "batch_job_id": "b-1", "created_at": "2026-01-01T00:00:00Z"}

    answer = explain(record, batch, LabSettings.model_validate(POOLS), now=NOW, threshold=60)

    assert answer["cause"] == "above_max_vcpus" and answer["details"]["pool"] == "highmem"
    assert answer["message"].startswith(f"It waits on pool highmem (at most 64 vCPUs, {MEMORY_POOL_MAX:,} MiB per job).")
    assert "compute.pools.highmem's max vCPUs" in answer["fix"]


def test_a_request_may_choose_a_pool_its_pipeline_allows(pools_lab):
    chosen = pools_lab.submit({"pipeline": "fastq-stats", "inputs": [READS], "pool": "gpu", "queue": "on-demand"})
    assert queue_of(pools_lab, chosen) == QUEUES[("gpu", "on-demand")]

    unknown = pools_lab.submit({"pipeline": "fastq-stats", "inputs": [READS], "pool": "huge"})
    assert unknown.status == 422 and unknown.error["code"] == "unknown_pool"
    assert unknown.error["details"]["allowed"] == ["default", "gpu", "highmem"]

    other = pools_lab.submit({"pipeline": "basecall", "inputs": [READS], "pool": "highmem"})
    assert other.status == 422 and other.error["code"] == "pool_not_allowed"
    assert "runs only on pool 'gpu'" in other.error["message"]


def test_a_nextflow_job_on_another_pools_queue_is_recorded(pools_lab):
    from tests.status.test_status_engine_jobs import engine_records, nextflow_event

    pools_lab.deliver(nextflow_event("RUNNABLE", queue=QUEUES[("highmem", "on-demand")]))

    (record,) = engine_records(pools_lab)
    assert (record["queue"], record["job_queue"]) == ("on-demand", QUEUES[("highmem", "on-demand")])


def test_a_request_may_ask_for_a_gpu_and_is_placed_on_a_gpu_pool_with_the_runner_told_to_check_it(pools_lab):
    # What `labbatch doctor`'s GPU canary sends: a CPU pipeline with one GPU, on the GPU pool.
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = pools_lab.submit({"pipeline": "fastq-stats", "inputs": [READS], "gpus": 1})

    assert queue_of(pools_lab, answer) == QUEUES[("gpu", "spot")]  # only the GPU pool holds a GPU
    (call,) = submitted
    assert {"type": "GPU", "value": "1"} in call["containerOverrides"]["resourceRequirements"]
    env = {v["name"]: v["value"] for v in call["containerOverrides"]["environment"]}
    assert env[gpu_check.GPUS_ENV] == "1"
    record = next(r for r in pools_lab.job_records() if r["job_id"] == answer.body["job_id"])
    assert record["gpus"] == 1 and record["pool"] == "gpu"


def test_a_pipelines_own_gpus_reach_the_runner_and_a_request_cannot_ask_for_fewer(pools_lab, monkeypatch):
    from labbatch_api import handler as job_api
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    assert pools_lab.submit({"pipeline": "basecall", "inputs": [READS]}).status == 202
    env = {v["name"]: v["value"] for v in submitted[0]["containerOverrides"]["environment"]}
    assert env[gpu_check.GPUS_ENV] == "1"

    fewer = pools_lab.submit({"pipeline": "basecall", "inputs": [READS], "gpus": 0})
    assert fewer.status == 422  # at least one: the request model's bound

    settings = copy.deepcopy(POOLS)
    settings["pipelines"]["basecall"]["gpus"] = 2
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings, separators=(",", ":")))
    job_api.runtime.cache_clear()
    fewer = pools_lab.submit({"pipeline": "basecall", "inputs": [READS], "gpus": 1})
    assert fewer.status == 422 and fewer.error["code"] == "gpus_too_few"
    assert fewer.error["details"] == {"field": "gpus", "asked": 1, "minimum": 2}


def test_a_recovered_gpu_job_asks_for_its_gpus_again():
    from labbatch_status.recovery import Plan, new_record, submit_job_request

    old = {"job_id": "j-old", "pipeline": "fastq-stats", "output_prefix": "s3://r/jobs/j-old/", "vcpus": 1,
           "memory_mib": 2048, "gpus": 1, "job_definition": "labbatch-example-fastq-stats"}
    plan = Plan("spot_reclaimed", "reclaimed", "on-demand", 2048, "gpu")
    new = new_record(old, plan, job_id="j-new", prefix="s3://r/jobs/j-new/", job_queue=QUEUES[("gpu", "on-demand")],
                     job_definition="labbatch-example-fastq-stats", lab="example")

    request = submit_job_request(old, new, {gpu_check.GPUS_ENV: "1"}, job_name="canary", lab="example")

    assert new["gpus"] == 1 and new["pool"] == "gpu"
    assert {"type": "GPU", "value": "1"} in request["containerOverrides"]["resourceRequirements"]
    assert {"name": gpu_check.GPUS_ENV, "value": "1"} in request["containerOverrides"]["environment"]
