"""Local Batch's UpdateJobQueue / UpdateComputeEnvironment (state only), as administrators switch
them in AWS: a disabled environment starts nothing, a disabled queue keeps its jobs and takes no
new ones, and both are reported by the Describe calls that explain a wait."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from test_batch_helpers import ON_DEMAND_QUEUE, definition, local_batch, wait_for


@pytest.fixture
def lab(tmp_path):
    with local_batch(tmp_path, [definition("quick", "print('ok')")]) as (batch, client, recorder):
        yield batch, client


def states(client) -> tuple[str, str]:
    queue = client.describe_job_queues(jobQueues=[ON_DEMAND_QUEUE])["jobQueues"][0]
    environment = client.describe_compute_environments(computeEnvironments=["lab-on-demand-ce"])["computeEnvironments"][0]
    return queue["state"], environment["state"]


def test_disabled_environment_holds_jobs_until_enabled_again(lab):
    _, client = lab
    answer = client.update_compute_environment(computeEnvironment="lab-on-demand-ce", state="DISABLED")
    assert answer["computeEnvironmentName"] == "lab-on-demand-ce"
    assert states(client) == ("ENABLED", "DISABLED")

    job_id = client.submit_job(jobName="held", jobQueue=ON_DEMAND_QUEUE, jobDefinition="quick")["jobId"]
    with pytest.raises(AssertionError):
        wait_for(client, job_id, timeout=1.0)
    assert client.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNABLE"

    client.update_compute_environment(computeEnvironment="lab-on-demand-ce", state="ENABLED")
    assert wait_for(client, job_id)["status"] == "SUCCEEDED"


def test_disabled_queue_takes_no_new_jobs(lab):
    _, client = lab
    arn = client.describe_job_queues(jobQueues=[ON_DEMAND_QUEUE])["jobQueues"][0]["jobQueueArn"]
    client.update_job_queue(jobQueue=arn, state="DISABLED")
    assert states(client) == ("DISABLED", "ENABLED")
    with pytest.raises(ClientError, match="DISABLED"):
        client.submit_job(jobName="refused", jobQueue=ON_DEMAND_QUEUE, jobDefinition="quick")
    client.update_job_queue(jobQueue=ON_DEMAND_QUEUE, state="ENABLED")
    job_id = client.submit_job(jobName="taken", jobQueue=ON_DEMAND_QUEUE, jobDefinition="quick")["jobId"]
    assert wait_for(client, job_id)["status"] == "SUCCEEDED"


def test_only_the_state_can_change_and_only_known_resources(lab):
    _, client = lab
    with pytest.raises(ClientError, match="priority"):
        client.update_job_queue(jobQueue=ON_DEMAND_QUEUE, priority=5)
    with pytest.raises(ClientError, match="not found"):
        client.update_job_queue(jobQueue="nope", state="DISABLED")
    with pytest.raises(ClientError, match="not found"):
        client.update_compute_environment(computeEnvironment="nope", state="DISABLED")
    assert states(client) == ("ENABLED", "ENABLED")


def test_environments_report_at_most_this_machines_vcpus(tmp_path):
    environments = [{"name": "lab-spot-ce", "kind": "spot", "max_vcpus": 10_000},
                    {"name": "lab-on-demand-ce", "kind": "on-demand", "max_vcpus": 1}]
    with local_batch(tmp_path, [definition("quick", "print('ok')")], compute_environments=environments,
                     max_vcpus=2) as (_, client, _):
        reported = {e["computeEnvironmentName"]: e["computeResources"]["maxvCpus"]
                    for e in client.describe_compute_environments()["computeEnvironments"]}
    assert reported == {"lab-spot-ce": 2, "lab-on-demand-ce": 1}
