"""Local Batch: requests refused as Batch refuses them, and the Describe/List calls in Batch's shapes."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from test_batch_helpers import LAB_RETRY, ON_DEMAND_QUEUE, SPOT_QUEUE, definition, env_override, local_batch, wait_for


def client_error(call, **request) -> str:
    with pytest.raises(ClientError) as caught:
        call(**request)
    error = caught.value.response["Error"]
    assert error["Code"] == "ClientException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Message"]


@pytest.fixture
def lab(tmp_path):
    definitions = [definition("quick", "print('ok')", retry=LAB_RETRY, timeout_seconds=3600),
                   definition("quick", "print('revision 2')", revision=2)]
    with local_batch(tmp_path, definitions) as (batch, client, recorder):
        yield batch, client, recorder


def test_unknown_queue_or_job_definition_is_a_client_exception(lab):
    _, client, recorder = lab
    submit = client.submit_job
    assert "nope" in client_error(submit, jobName="j", jobQueue="nope", jobDefinition="quick")
    assert "missing" in client_error(submit, jobName="j", jobQueue=SPOT_QUEUE, jobDefinition="missing")
    assert "quick:9" in client_error(submit, jobName="j", jobQueue=SPOT_QUEUE, jobDefinition="quick:9")
    assert recorder.events == []  # nothing was submitted


@pytest.mark.parametrize("request_part, field", [
    ({"jobName": "-starts-with-hyphen"}, "jobName"),
    ({"arrayProperties": {"size": 1}}, "arrayProperties.size"),
    ({"arrayProperties": {"size": 10_001}}, "arrayProperties.size"),
    ({"containerOverrides": env_override(AWS_BATCH_JOB_ID="mine")}, "AWS_BATCH"),
    ({"containerOverrides": {"resourceRequirements": [{"type": "VCPU", "value": "0"}]}}, "resourceRequirements"),
    ({"containerOverrides": {"resourceRequirements": [{"type": "GPU", "value": "1"}]}}, "GPU"),
    ({"timeout": {"attemptDurationSeconds": 59}}, "attemptDurationSeconds"),
    ({"retryStrategy": {"attempts": 11}}, "attempts"),
    ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onStatusReason": "Host (EC2)*"}]}},
     "onStatusReason"),
    ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "1"}] * 6}},
     "evaluateOnExit"),
])
def test_requests_batch_would_refuse_name_the_field(lab, request_part, field):
    _, client, _ = lab
    request = {"jobName": "j", "jobQueue": SPOT_QUEUE, "jobDefinition": "quick", **request_part}
    assert field in client_error(client.submit_job, **request)


def test_queue_and_definition_given_by_arn_and_revision(lab):
    _, client, recorder = lab
    queue_arn = client.describe_job_queues(jobQueues=[SPOT_QUEUE])["jobQueues"][0]["jobQueueArn"]
    definition_arn = client.describe_job_definitions(jobDefinitions=["quick:1"])["jobDefinitions"][0]["jobDefinitionArn"]
    by_arn = wait_for(client, client.submit_job(jobName="a", jobQueue=queue_arn, jobDefinition=definition_arn)["jobId"])
    latest = wait_for(client, client.submit_job(jobName="l", jobQueue=SPOT_QUEUE, jobDefinition="quick")["jobId"])

    assert by_arn["jobDefinition"] == definition_arn and by_arn["jobQueue"] == queue_arn
    assert by_arn["retryStrategy"] == LAB_RETRY and by_arn["timeout"] == {"attemptDurationSeconds": 3600}
    assert recorder.logs[latest["container"]["logStreamName"]] == ["revision 2"]


def test_list_jobs_pages_and_defaults_to_running(lab):
    _, client, _ = lab
    ids = [client.submit_job(jobName=f"j{i}", jobQueue=ON_DEMAND_QUEUE, jobDefinition="quick")["jobId"] for i in range(5)]
    for job_id in ids:
        wait_for(client, job_id)

    pages = list(client.get_paginator("list_jobs").paginate(jobQueue=ON_DEMAND_QUEUE, jobStatus="SUCCEEDED",
                                                             PaginationConfig={"PageSize": 2}))
    assert [len(page["jobSummaryList"]) for page in pages] == [2, 2, 1]
    assert [s["jobId"] for page in pages for s in page["jobSummaryList"]] == ids[::-1]  # newest first
    assert client.list_jobs(jobQueue=ON_DEMAND_QUEUE)["jobSummaryList"] == []  # RUNNING only
    named = client.list_jobs(jobQueue=ON_DEMAND_QUEUE, filters=[{"name": "JOB_NAME", "values": ["j3*"]}])
    assert [s["jobId"] for s in named["jobSummaryList"]] == [ids[3]]
    assert "jobQueue" in client_error(client.list_jobs)


def test_describe_omits_unknown_ids_and_stopping_an_unknown_job_is_refused(lab):
    _, client, _ = lab
    assert client.describe_jobs(jobs=["no-such-job"])["jobs"] == []
    assert "no-such-job" in client_error(client.terminate_job, jobId="no-such-job", reason="x")
    assert "no-such-job" in client_error(client.cancel_job, jobId="no-such-job", reason="x")


def test_queues_and_compute_environments_are_described_as_registered(lab):
    _, client, _ = lab
    queues = {q["jobQueueName"]: q for q in client.describe_job_queues()["jobQueues"]}
    environments = {e["computeEnvironmentName"]: e for e in client.describe_compute_environments()["computeEnvironments"]}

    spot_queue = queues[SPOT_QUEUE]
    assert spot_queue["state"] == "ENABLED" and spot_queue["status"] == "VALID" and spot_queue["priority"] == 1
    assert [o["computeEnvironment"].rsplit("/", 1)[1] for o in spot_queue["computeEnvironmentOrder"]] == \
        ["lab-spot-ce", "lab-on-demand-ce"]
    assert environments["lab-spot-ce"]["computeResources"]["type"] == "SPOT"
    assert environments["lab-on-demand-ce"]["computeResources"]["type"] == "EC2"
    assert environments["lab-spot-ce"]["computeResources"]["desiredvCpus"] == 0
    revisions = client.describe_job_definitions(jobDefinitionName="quick", status="ACTIVE")["jobDefinitions"]
    assert sorted(d["revision"] for d in revisions) == [1, 2]
    assert revisions[0]["containerProperties"]["resourceRequirements"] == [{"type": "VCPU", "value": "1"},
                                                                           {"type": "MEMORY", "value": "256"}]


def test_operations_it_does_not_serve_are_refused_in_batchs_shape(lab):
    _, client, _ = lab
    assert "not an operation" in client_error(client.list_scheduling_policies)
