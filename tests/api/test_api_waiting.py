"""Why is it waiting: `waiting_because` on GET /jobs/{id}, from Batch's own words and the state of the
job's queue and compute environments (waiting.py), and GET /lab (lab_state.py).

The Batch answers are DescribeJobs / ListJobs / DescribeJobQueues / DescribeComputeEnvironments
shapes as botocore's batch model and the AWS Batch guide ("Jobs stuck in a RUNNABLE status") give
them; moto cannot hold a job in RUNNABLE, so a small fake serves them here. Local mode answers the
same calls for real (tests/e2e/test_why_and_doctor.py).
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.api_lab import ON_DEMAND_QUEUE, READS, SETTINGS, SPOT_QUEUE, api_clients

NOW = 1_800_000_000.0  # seconds
ACCOUNT_ARN = "arn:aws:batch:us-east-1:123456789012"
SPOT_CE, OD_CE = "labbatch-example-spot-ce", "labbatch-example-od-ce"


def environment(name: str, *, kind: str = "SPOT", max_vcpus: int = 64, state: str = "ENABLED",
                status: str = "VALID", reason: str = "ComputeEnvironment Healthy") -> dict:
    return {
        "computeEnvironmentName": name,
        "computeEnvironmentArn": f"{ACCOUNT_ARN}:compute-environment/{name}",
        "ecsClusterArn": f"arn:aws:ecs:us-east-1:123456789012:cluster/AWSBatch-{name}-0f1e2d3c",
        "type": "MANAGED", "state": state, "status": status, "statusReason": reason,
        "computeResources": {"type": kind, "minvCpus": 0, "maxvCpus": max_vcpus, "desiredvCpus": 0,
                             "instanceTypes": ["m6i.large", "m6i.xlarge", "m6i.2xlarge"]},
    }


def queue(name: str, environments: list[str], *, state: str = "ENABLED", status: str = "VALID",
          reason: str = "JobQueue Healthy") -> dict:
    return {
        "jobQueueName": name, "jobQueueArn": f"{ACCOUNT_ARN}:job-queue/{name}", "state": state,
        "status": status, "statusReason": reason, "priority": 10,
        "computeEnvironmentOrder": [{"order": i, "computeEnvironment": f"{ACCOUNT_ARN}:compute-environment/{ce}"}
                                    for i, ce in enumerate(environments, start=1)],
    }


def batch_job(job_id: str, *, status: str = "RUNNABLE", queue_name: str = SPOT_QUEUE, vcpus: int = 1,
              memory: int = 2048, created: float = NOW - 600, reason: str | None = None,
              cluster_of: str | None = None, attempts: list | None = None, array: dict | None = None) -> dict:
    container = {"image": "runner", "resourceRequirements": [{"type": "VCPU", "value": str(vcpus)},
                                                             {"type": "MEMORY", "value": str(memory)}]}
    if cluster_of:
        container["taskArn"] = f"arn:aws:ecs:us-east-1:123456789012:task/AWSBatch-{cluster_of}-0f1e2d3c/{job_id[:8]}"
    job = {"jobId": job_id, "jobName": job_id, "jobArn": f"{ACCOUNT_ARN}:job/{job_id}",
           "jobQueue": f"{ACCOUNT_ARN}:job-queue/{queue_name}", "status": status, "createdAt": int(created * 1000),
           "attempts": attempts or [], "container": container, "jobDefinition": "labbatch-example-fastq-stats:1"}
    if reason:
        job["statusReason"] = reason
    if array:
        job["arrayProperties"] = array
    return job


class FakeBatch:
    """The four Batch reads waiting.py makes, over a dict of jobs; records every call."""

    def __init__(self, jobs: list[dict], queues: list[dict] | None = None, environments: list[dict] | None = None):
        self.jobs = {job["jobId"]: job for job in jobs}
        self.queues = queues or [queue(SPOT_QUEUE, [SPOT_CE, OD_CE]), queue(ON_DEMAND_QUEUE, [OD_CE])]
        self.environments = environments or [environment(SPOT_CE), environment(OD_CE, kind="EC2", max_vcpus=16)]
        self.calls: list[str] = []

    def describe_jobs(self, jobs):
        self.calls.append("DescribeJobs")
        return {"jobs": [copy.deepcopy(self.jobs[j]) for j in jobs if j in self.jobs]}

    def list_jobs(self, jobStatus, jobQueue=None, arrayJobId=None, maxResults=100, nextToken=None):
        self.calls.append("ListJobs")
        if arrayJobId:
            found = [j for j in self.jobs.values() if j["jobId"].startswith(arrayJobId + ":")]
        else:
            wanted = jobQueue.rsplit("/", 1)[-1]  # a name or an ARN, as in Batch
            found = [j for j in self.jobs.values() if j["jobQueue"].endswith("/" + wanted) and ":" not in j["jobId"]]
        found = [j for j in found if j["status"] == jobStatus][:maxResults]
        return {"jobSummaryList": [{"jobId": j["jobId"], "status": j["status"], "createdAt": j["createdAt"],
                                    **({"arrayProperties": {"size": j["arrayProperties"]["size"]}}
                                       if j.get("arrayProperties", {}).get("size") else {})} for j in found]}

    def describe_job_queues(self, jobQueues):
        self.calls.append("DescribeJobQueues")
        names = {ref.rsplit("/", 1)[-1] for ref in jobQueues}
        return {"jobQueues": [q for q in self.queues if q["jobQueueName"] in names]}

    def describe_compute_environments(self, computeEnvironments):
        self.calls.append("DescribeComputeEnvironments")
        names = {ref.rsplit("/", 1)[-1] for ref in computeEnvironments}
        return {"computeEnvironments": [e for e in self.environments if e["computeEnvironmentName"] in names]}


def settings():
    from labbatch_contract.settings import LabSettings

    return LabSettings.model_validate(SETTINGS)


def record(batch_job_id: str = "b-1", status: str = "RUNNABLE", **extra) -> dict:
    return {"job_id": "j-01abcdefghjkmnpqrstvwxyz00", "status": status, "batch_job_id": batch_job_id,
            "created_at": "2027-01-15T07:00:00.000000Z", "submitted_at": "2027-01-15T07:00:00.000000Z", **extra}


def explain(batch: FakeBatch, rec: dict | None = None, *, threshold: float = 60):
    from labbatch_api.waiting import explain as explain_waiting

    return explain_waiting(rec or record(), batch, settings(), now=NOW, threshold=threshold)


# --- the causes -------------------------------------------------------------------------------


def test_queue_disabled():
    batch = FakeBatch([batch_job("b-1")], queues=[queue(SPOT_QUEUE, [SPOT_CE, OD_CE], state="DISABLED")])
    answer = explain(batch)
    assert answer["cause"] == "queue_disabled"
    assert SPOT_QUEUE in answer["message"] and "DISABLED" in answer["message"]
    assert f"update-job-queue --job-queue {SPOT_QUEUE} --state ENABLED" in answer["fix"]
    assert answer["waiting_seconds"] == 600


def test_queue_invalid_says_batchs_reason():
    batch = FakeBatch([batch_job("b-1")], queues=[
        queue(SPOT_QUEUE, [SPOT_CE, OD_CE], status="INVALID", reason="CLIENT_ERROR - compute environment deleted")])
    answer = explain(batch)
    assert answer["cause"] == "queue_invalid"
    assert "compute environment deleted" in answer["message"]


def test_every_compute_environment_disabled():
    batch = FakeBatch([batch_job("b-1")], environments=[
        environment(SPOT_CE, state="DISABLED"), environment(OD_CE, kind="EC2", state="DISABLED")])
    answer = explain(batch)
    assert answer["cause"] == "compute_environment_disabled"
    assert f"{SPOT_CE} is DISABLED" in answer["message"] and f"{OD_CE} is DISABLED" in answer["message"]
    assert "update-compute-environment" in answer["fix"]


def test_compute_environment_invalid_with_its_status_reason():
    invalid = ("CLIENT_ERROR - The instance profile arn:aws:iam::123456789012:instance-profile/gone "
               "does not exist")
    batch = FakeBatch([batch_job("b-1", queue_name=ON_DEMAND_QUEUE)], environments=[
        environment(SPOT_CE), environment(OD_CE, kind="EC2", status="INVALID", reason=invalid)])
    answer = explain(batch)
    assert answer["cause"] == "compute_environment_invalid"
    assert f"{OD_CE} is INVALID ({invalid})" in answer["message"]
    assert answer["details"]["compute_environments"] == [OD_CE]


def test_one_environment_invalid_is_mentioned_beside_the_real_cause():
    batch = FakeBatch(
        [batch_job("b-1", reason="CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity "
                                 "requested for instance type [m6i.2xlarge]")],
        environments=[environment(SPOT_CE), environment(OD_CE, kind="EC2", status="INVALID", reason="bad AMI")])
    answer = explain(batch)
    assert answer["cause"] == "capacity_unavailable"
    assert f"Also: {OD_CE} is INVALID (bad AMI)" in answer["message"]


def test_at_max_vcpus_counts_the_running_jobs_on_the_queues_environments():
    running = [batch_job(f"r-{i}", status="RUNNING", vcpus=8, cluster_of=SPOT_CE) for i in range(8)]  # 64 on spot
    running += [batch_job("r-od", status="STARTING", queue_name=ON_DEMAND_QUEUE, vcpus=16, cluster_of=OD_CE)]
    batch = FakeBatch([batch_job("b-1", vcpus=4), *running])
    answer = explain(batch)
    assert answer["cause"] == "at_max_vcpus"
    assert answer["details"] == {"queue": SPOT_QUEUE, "vcpus_in_use": 80, "max_vcpus": 80, "vcpus": 4}
    assert "80 of 80 in use" in answer["message"]


def test_on_demand_queue_counts_only_what_runs_on_its_environment():
    # Spot-queue jobs on the spot environment do not fill the on-demand queue.
    running = [batch_job(f"r-{i}", status="RUNNING", vcpus=8, cluster_of=SPOT_CE) for i in range(4)]
    running.append(batch_job("r-od", status="RUNNING", vcpus=14, cluster_of=OD_CE))  # spot job fell back to on-demand
    batch = FakeBatch([batch_job("b-1", queue_name=ON_DEMAND_QUEUE, vcpus=4), *running])
    answer = explain(batch)
    assert answer["cause"] == "at_max_vcpus"
    assert answer["details"]["vcpus_in_use"] == 14 and answer["details"]["max_vcpus"] == 16


def test_running_array_children_count_too():
    parent = batch_job("arr", status="PENDING", vcpus=8, array={"size": 10})
    children = [batch_job(f"arr:{i}", status="RUNNING", vcpus=8, cluster_of=SPOT_CE, array={"index": i})
                for i in range(10)]
    batch = FakeBatch([batch_job("b-1", vcpus=1), parent, *children])
    answer = explain(batch)
    assert answer["cause"] == "at_max_vcpus"
    assert answer["details"]["vcpus_in_use"] == 80


def test_capacity_unavailable_names_the_instance_type():
    reason = ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested for "
              "instance type [m6i.2xlarge]")
    answer = explain(FakeBatch([batch_job("b-1", reason=reason)]))
    assert answer["cause"] == "capacity_unavailable"
    assert "no capacity now for m6i.2xlarge" in answer["message"]
    assert "--queue on-demand" in answer["fix"]
    assert answer["status_reason"] == reason


def test_job_larger_than_any_instance():
    reason = ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is "
              "higher than that can be met by the CE(s) attached to the job queue.")
    answer = explain(FakeBatch([batch_job("b-1", vcpus=8, memory=32768, reason=reason)]))
    assert answer["cause"] == "job_too_large"
    assert "8 vCPUs and 32,768 MiB" in answer["message"] and "m6i.2xlarge" in answer["message"]
    limits = SETTINGS["limits"]
    assert f"at most {limits['max_vcpus']} vCPUs and {limits['max_memory_mib']:,} MiB" in answer["fix"]


def test_more_vcpus_than_the_environments_may_run():
    reason = ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue cannot "
              "meet the CPU requirement of the job.")
    answer = explain(FakeBatch([batch_job("b-1", queue_name=ON_DEMAND_QUEUE, vcpus=32, reason=reason)]))
    assert answer["cause"] == "above_max_vcpus"
    assert answer["details"]["max_vcpus"] == 16


def test_behind_older_jobs_then_scaling_up():
    older = batch_job("b-0", created=NOW - 900)
    answer = explain(FakeBatch([older, batch_job("b-1")]))
    assert answer["cause"] == "queued_behind" and answer["details"]["jobs_ahead"] == 1
    answer = explain(FakeBatch([batch_job("b-1")]))
    assert answer["cause"] == "scaling_up"
    assert "0 of 80 vCPUs in use" in answer["message"]


def test_an_array_job_is_explained_through_a_runnable_child():
    parent = batch_job("arr", status="PENDING", array={"size": 3})
    children = [batch_job(f"arr:{i}", array={"index": i}, vcpus=2,
                          reason="CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity "
                                 "requested for instance type [m6i.large]") for i in range(3)]
    answer = explain(FakeBatch([parent, *children]), record("arr", status="PENDING", array_size=3))
    assert answer["cause"] == "capacity_unavailable" and answer["array_index"] == 0


# --- when there is nothing to explain -----------------------------------------------------------


def test_nothing_below_the_threshold_and_no_batch_call_for_a_fresh_job():
    batch = FakeBatch([batch_job("b-1", created=NOW - 30)])
    assert explain(batch) is None  # Batch says 30 s: below 60
    fresh = record(submitted_at="2027-01-15T08:00:00.000000Z")
    batch = FakeBatch([batch_job("b-1")])
    from labbatch_api.waiting import explain as explain_waiting
    from datetime import datetime

    now = datetime.fromisoformat("2027-01-15T08:00:10+00:00").timestamp()
    assert explain_waiting(fresh, batch, settings(), now=now, threshold=60) is None
    assert batch.calls == []  # the ledger alone says it is too soon


def test_a_retried_job_waits_from_its_last_attempts_end():
    attempts = [{"startedAt": int((NOW - 700) * 1000), "stoppedAt": int((NOW - 20) * 1000),
                 "statusReason": "Host EC2 (instance i-0abc) terminated.", "container": {}}]
    assert explain(FakeBatch([batch_job("b-1", created=NOW - 900, attempts=attempts)])) is None


def test_not_waiting_when_batch_has_moved_on_or_the_job_is_elsewhere():
    assert explain(FakeBatch([batch_job("b-1", status="RUNNING", cluster_of=SPOT_CE)])) is None
    assert explain(FakeBatch([batch_job("b-1")]), record(status="RUNNING")) is None
    assert explain(FakeBatch([batch_job("b-1")]), record(status="SUCCEEDED")) is None
    assert explain(FakeBatch([]), record()) is None


def test_threshold_defaults_to_a_minute_and_is_set_by_the_environment(monkeypatch):
    from labbatch_api import waiting
    monkeypatch.delenv(waiting.WAITING_AFTER_ENV, raising=False)
    assert waiting.waiting_after_seconds() == waiting.WAITING_AFTER_SECONDS == 60
    monkeypatch.setenv(waiting.WAITING_AFTER_ENV, "0.5")
    assert waiting.waiting_after_seconds() == 0.5
    monkeypatch.setenv(waiting.WAITING_AFTER_ENV, "soon")
    assert waiting.waiting_after_seconds() == 60


@pytest.mark.parametrize("reason, code", [
    ("Canceled by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
     "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"),
    ("Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
     "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"),
    # local mode's words (labbatch_contract/batch_reasons.py)
    ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - cancelled by the job queue's state time limit: RUNNABLE "
     "for more than 1800 s without a compute environment able to run it",
     "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"),
])
def test_cancelled_by_the_queues_time_limit_says_so_in_plain_words(reason, code):
    batch = FakeBatch([])
    answer = explain(batch, record(status="FAILED", status_reason=reason))
    assert answer["cause"] == "cancelled_by_time_limit"
    assert answer["message"].startswith("Batch cancelled this job: it waited in RUNNABLE longer than its job "
                                        "queue's time limit because ")
    assert answer["details"] == {"reason_code": code}
    assert batch.calls == []


def test_other_failures_are_not_a_wait():
    assert explain(FakeBatch([]), record(status="FAILED", status_reason="Essential container in task exited")) is None


# --- through the API ----------------------------------------------------------------------------


def submitted_job(lab) -> dict:
    answer = lab.submit({"pipeline": "fastq-stats", "inputs": [READS]})
    assert answer.status == 202, answer.body
    return answer.body


def test_get_job_carries_waiting_because(lab, monkeypatch):
    job = submitted_job(lab)
    batch = api_clients().batch
    blocked = batch_job(job["batch_job_id"], created=0,
                        reason="MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement "
                               "(vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the job queue.")
    fake = FakeBatch([blocked])
    monkeypatch.setattr(batch, "describe_jobs", fake.describe_jobs)
    monkeypatch.setattr(batch, "list_jobs", fake.list_jobs)
    monkeypatch.setattr(batch, "describe_job_queues", fake.describe_job_queues)
    monkeypatch.setattr(batch, "describe_compute_environments", fake.describe_compute_environments)
    monkeypatch.setenv("LABBATCH_WAITING_AFTER_SECONDS", "0")
    lab.dynamodb.update_item(TableName=SETTINGS["table"], Key={"job_id": {"S": job["job_id"]}},
                             UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues={":s": {"S": "RUNNABLE"}})

    answer = lab.call("GET", f"/jobs/{job['job_id']}")

    assert answer.status == 200, answer.body
    assert answer.body["waiting_because"]["cause"] == "job_too_large"
    assert answer.body["waiting_because"]["status_reason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")


def test_get_job_answers_even_when_batch_cannot_be_asked(lab, monkeypatch):
    from tests.api_lab import aws_error, inject

    job = submitted_job(lab)
    monkeypatch.setenv("LABBATCH_WAITING_AFTER_SECONDS", "0")
    lab.dynamodb.update_item(TableName=SETTINGS["table"], Key={"job_id": {"S": job["job_id"]}},
                             UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues={":s": {"S": "RUNNABLE"}})
    inject(api_clients().batch, "DescribeJobs", [aws_error("AccessDeniedException", 403)])

    answer = lab.call("GET", f"/jobs/{job['job_id']}")

    assert answer.status == 200 and answer.body.get("waiting_because") is None


def test_get_lab_reports_queues_environments_and_images(lab):
    answer = lab.call("GET", "/lab")

    assert answer.status == 200, answer.body
    body = answer.body
    assert body["lab"] == "example" and body["caller"].endswith(":assumed-role/LabScientist/alice")
    assert {q["queue"]: (q["name"], q["state"], q["status"]) for q in body["queues"]} == {
        "spot": (SPOT_QUEUE, "ENABLED", "VALID"), "on-demand": (ON_DEMAND_QUEUE, "ENABLED", "VALID")}
    environments = body["queues"][0]["compute_environments"]
    assert [e["name"] for e in environments] == ["labbatch-example-ce"] and environments[0]["state"] == "ENABLED"
    pipelines = {p["name"]: p for p in body["pipelines"]}
    assert set(pipelines) == set(SETTINGS["pipelines"])
    assert pipelines["fastq-stats"]["image"] == "public.ecr.aws/labbatch/runner:latest"
    assert pipelines["fastq-stats"]["status"] == "ACTIVE"
    assert body["buckets"] == SETTINGS["buckets"]


def test_get_lab_needs_a_caller_and_only_answers_get(lab):
    assert lab.call("GET", "/lab", caller=None).status == 403
    answer = lab.call("POST", "/lab", {})
    assert answer.status == 405 and answer.headers["Allow"] == "GET"


def test_openapi_documents_the_new_route_and_field(lab):
    schema = json.loads(json.dumps(lab.call("GET", "/openapi.json").body))
    assert "/lab" in schema["paths"]
    assert "waiting_because" in schema["components"]["schemas"]["JobView"]["properties"]
