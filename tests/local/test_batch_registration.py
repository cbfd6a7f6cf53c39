"""The example lab's layout registers with the local executor as the constructs deploy it."""

from __future__ import annotations

from pathlib import Path

import boto3

from labbatch.lab.batch_layout import RUNNER_LAUNCH, layout
from labbatch.lab.loader import load_lab
from labbatch.local.batch.executor import LocalBatch
from labbatch.local.batch.service import LocalBatchService
from labbatch.local.batch.registration import registration

ROOT = Path(__file__).resolve().parents[2]


def test_example_lab_registers_its_queues_environments_and_definitions(tmp_path):
    lab = load_lab(ROOT / "labs" / "example.yaml")
    with LocalBatchService(LocalBatch(**registration(layout(lab), lab.name),
                                      scratch_root=tmp_path / "scratch")) as service:
        client = boto3.client("batch", endpoint_url=service.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        queues = {q["jobQueueName"]: q for q in client.describe_job_queues()["jobQueues"]}
        definition = client.describe_job_definitions(jobDefinitions=["labbatch-example-fastq-stats"])["jobDefinitions"][0]

    spot = queues["labbatch-example-spot"]
    assert [o["computeEnvironment"].rsplit("/", 1)[1] for o in spot["computeEnvironmentOrder"]] == \
        ["labbatch-example-spot", "labbatch-example-on-demand"]
    assert {a["reason"] for a in spot["jobStateTimeLimitActions"]} == {
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
        "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"}
    assert queues["labbatch-example-on-demand"]["priority"] > spot["priority"]
    assert definition["containerProperties"]["command"] == [*RUNNER_LAUNCH, "fastq-stats", "{input}", "--output-dir",
                                                            "{output_dir}"]
    assert definition["retryStrategy"]["evaluateOnExit"][0] == {"action": "RETRY", "onStatusReason": "Host EC2*"}


def test_the_host_executor_runs_the_installed_runner_in_place_of_the_mounted_one():
    from labbatch.lab.batch_layout import on_host, runner_launch

    for architecture in ("x86_64", "arm64"):
        assert on_host([*runner_launch(architecture), "bwa", "mem", "{input}"]) == [
            "labbatch-runner", "--", "bwa", "mem", "{input}"]
    assert on_host(["python", "-c", "print(1)"]) == ["python", "-c", "print(1)"]


def test_the_labs_spot_allocation_strategy_is_what_local_batch_reports(tmp_path):
    lab = load_lab(ROOT / "labs" / "example.yaml")
    lab = lab.model_copy(update={"compute": lab.compute.model_copy(
        update={"spot_allocation_strategy": "SPOT_CAPACITY_OPTIMIZED"})})
    with LocalBatchService(LocalBatch(**registration(layout(lab), lab.name),
                                      scratch_root=tmp_path / "scratch")) as service:
        client = boto3.client("batch", endpoint_url=service.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        environments = client.describe_compute_environments()["computeEnvironments"]

    strategies = {e["computeEnvironmentName"]: e["computeResources"]["allocationStrategy"] for e in environments}
    assert strategies == {"labbatch-example-spot": "SPOT_CAPACITY_OPTIMIZED",
                          "labbatch-example-on-demand": "BEST_FIT_PROGRESSIVE"}
