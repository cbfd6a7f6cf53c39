"""Issue 26 end to end in local mode: a lab with two CPU pools and a GPU pool. Jobs are placed on
each CPU pool (by their pipeline's pool, by a request's pool, by the cheapest that holds them), a
GPU job is refused at submission because this machine has no GPU, and `labbatch why`,
`labbatch pipelines` and `labbatch cost` speak of pools."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from labbatch.local.docker_runner import find_engine, nvidia_runtime
from tests.e2e.conftest import ROOT, start_local
from tests.e2e.test_local_block import final
from tests.e2e.test_why_and_doctor import labbatch, local_batch, until

READS = b"@r0\nACGTACGT\n+\nIIIIIIII\n"


def pools_labs_dir(tmp_path: Path) -> Path:
    labs = tmp_path / "labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["name"] = "pools"
    data["compute"] = {"pools": {
        "default": data["compute"],
        "highmem": {"instance_types": ["r6i.xlarge", "r6i.2xlarge"], "on_demand_max_vcpus": 16, "spot_max_vcpus": 16},
        "gpu": {"gpu": True, "instance_types": ["g5.xlarge", "g5.2xlarge"], "on_demand_max_vcpus": 8,
                "spot_max_vcpus": 8},
    }}
    data["pipelines"]["stats-highmem"] = {**copy.deepcopy(data["pipelines"]["fastq-stats"]), "pool": "highmem"}
    data["pipelines"]["basecall"] = {"image": "ontresearch/dorado:latest", "gpus": 1, "pool": "gpu", "vcpus": 1,
                                     "memory_mib": 2048,
                                     "command": ["dorado", "basecaller", "hac", "{input}", "--output-dir", "{output_dir}"]}
    (labs / "pools.yaml").write_text(yaml.safe_dump(copy.deepcopy(data), sort_keys=False))
    return labs


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pools")
    running = start_local(tmp, "--lab", "pools", labs_dir=pools_labs_dir(tmp),
                          env={**os.environ, "LABBATCH_WAITING_AFTER_SECONDS": "1"})
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def reads(lab) -> str:
    return lab.put("inputs", "pools/reads.fastq", READS)


def job_queue(lab, job: dict) -> str:
    [described] = local_batch(lab).describe_jobs(jobs=[job["batch_job_id"]])["jobs"]
    return described["jobQueue"].rsplit("/", 1)[-1]


def test_jobs_are_placed_on_each_pool_and_run(lab, reads):
    client = lab.client()
    cheapest = client.submit("fastq-stats", [reads])  # 1 vCPU, 2 GiB: an m6i.large of the pool default
    named = client.submit("stats-highmem", [reads])  # its pipeline names the pool
    chosen = client.submit("fastq-stats", [reads], pool="highmem", queue="on-demand")

    assert job_queue(lab, cheapest) == "labbatch-pools-spot"
    assert job_queue(lab, named) == "labbatch-pools-highmem-spot"
    assert job_queue(lab, chosen) == "labbatch-pools-highmem-on-demand"
    for job in (cheapest, named, chosen):
        assert final(client, job["job_id"])["status"] == "SUCCEEDED"


def test_a_gpu_job_is_refused_at_submission_because_this_machine_has_no_gpu(lab, reads):
    assert lab.info["gpus"] is False  # the host executor; and no NVIDIA runtime here
    result = labbatch(lab, "submit", "basecall", reads)

    assert result.returncode != 0
    assert "gpus: 1 (pipeline basecall) cannot run here: this machine has no GPU" in result.stderr
    assert "the lab's pool gpu gives 1 GPU in AWS" in result.stderr
    # Nothing was submitted: it never waits for a GPU this machine cannot give.
    assert not [j for j in lab.client().list(pipeline="basecall")["jobs"]]


def test_labbatch_pipelines_shows_the_pools_and_their_limits(lab, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    result = labbatch(lab, "pipelines")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("basecall" in line and "pool gpu" in line for line in lines)
    assert any("fastq-stats" in line and "cheapest pool that holds it" in line for line in lines)
    gpu = next(line for line in lines if line.strip().startswith(("│ gpu (GPU)", "gpu (GPU)")) or "gpu (GPU)" in line)
    assert "labbatch-pools-gpu-spot" in gpu and "no GPU on this machine (the lab's instances give 1)" in gpu
    assert any("highmem" in line and "labbatch-pools-highmem-on-demand" in line for line in lines)
    body = json.loads(labbatch(lab, "pipelines", "--json").stdout)
    assert [p["name"] for p in body["pools"]] == ["default", "highmem", "gpu"]


def test_labbatch_why_explains_a_wait_in_terms_of_its_pool(lab, reads):
    batch = local_batch(lab)
    queue = "labbatch-pools-highmem-spot"
    environments = ("labbatch-pools-highmem-spot", "labbatch-pools-highmem-on-demand")  # the pool's own
    for environment in environments:
        batch.update_compute_environment(computeEnvironment=environment, state="DISABLED")
    try:
        job = lab.client().submit("stats-highmem", [reads])
        until(lambda: lab.client().get(job["job_id"]).get("waiting_because"))
        why = labbatch(lab, "why", job["job_id"])
        assert why.returncode == 0, why.stderr
        assert "It waits on pool highmem (at most" in why.stdout
        assert f"Every compute environment of queue {queue} is disabled" in why.stdout
        answer = json.loads(labbatch(lab, "why", job["job_id"], "--json").stdout)["waiting_because"]
        assert answer["cause"] == "compute_environment_disabled" and answer["details"]["pool"] == "highmem"
        # The other pools' jobs are not held up by it.
        other = lab.client().submit("fastq-stats", [reads])
        assert final(lab.client(), other["job_id"])["status"] == "SUCCEEDED"
    finally:
        for environment in environments:
            batch.update_compute_environment(computeEnvironment=environment, state="ENABLED")
    assert final(lab.client(), job["job_id"])["status"] == "SUCCEEDED"


def test_labbatch_cost_prices_each_pool_with_gpu_hours(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    # The fixed costs come from synthesized templates (tests/cdk prices them); here, empty ones:
    # what each pool's instances cost per hour comes from the lab file.
    for part in ("Storage", "Compute", "Api", "Operations"):
        (tmp_path / f"LabBatch-pools-{part}.template.json").write_text(json.dumps({"Resources": {}}))
    labs = Path(lab.process.args[lab.process.args.index("--labs-dir") + 1])  # the lab's own lab file
    result = labbatch(lab, "cost", "--lab", "pools", "--labs-dir", str(labs), "--cdk-out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pools = {pool["pool"]: pool for pool in report["per_job"]["pools"]}
    assert list(pools) == ["default", "highmem", "gpu"] and report["fixed_monthly_total_usd"] == 0
    g5 = next(row for row in pools["gpu"]["instances"] if row["instance_type"] == "g5.xlarge")
    assert g5["gpus"] == 1 and g5["gpu_hour_on_demand"] > 0
    text = labbatch(lab, "cost", "--lab", "pools", "--labs-dir", str(labs), "--cdk-out", str(tmp_path))
    assert "Per job on pool gpu (GPU)" in text.stdout and "GPU-hour on-demand" in text.stdout


@pytest.mark.skipif(find_engine() is None, reason="no container engine")
def test_this_machines_engine_reports_no_nvidia_runtime():
    # What the refusal above rests on: the engine here has no NVIDIA runtime, so `--gpus` is never passed.
    assert nvidia_runtime(find_engine()) is False


def test_labbatch_doctor_runs_a_canary_on_every_pools_queues(lab):
    result = labbatch(lab, "doctor", "--json", timeout=300)
    checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    for where in ("spot", "on-demand", "highmem spot", "highmem on-demand", "gpu spot", "gpu on-demand"):
        assert checks[f"canary on {where}"]["ok"], checks[f"canary on {where}"]
    gpu = checks["GPUs of pool gpu"]
    assert gpu["ok"] and "this machine has no GPU" in gpu["detail"]
    # dorado is not on this machine, and need not be: its jobs are refused here.
    basecall = checks["pipeline basecall image"]
    assert basecall["ok"] and "refused at submission here" in basecall["detail"]
    assert result.returncode == 0, result.stdout
