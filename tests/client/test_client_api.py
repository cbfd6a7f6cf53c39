"""LabBatchClient over signed HTTP, against the fake job API behind the local front."""

from __future__ import annotations

import json
import socket
import time

import pytest
from botocore.credentials import Credentials

from labbatch.client.sdk import (
    MAX_BODY_BYTES,
    LabBatchApiError,
    LabBatchClient,
    LabBatchConnectionError,
    LabBatchError,
)

REGION = "eu-central-1"
KEY, SECRET = "AKIACLIENTTESTKEY001", "client-test-secret"


@pytest.fixture
def client(gateway) -> LabBatchClient:
    with LabBatchClient(gateway.url, region=REGION, credentials=Credentials(KEY, SECRET)) as client:
        yield client


def test_submit_sends_the_contracts_body_and_answers_the_job(client, api):
    job = client.submit("align", ["s3://in/r1.fq", "s3://in/r2.fq"], parameters={"reference": "s3://ref/g.fa"},
                        queue="on-demand", vcpus=2, memory_mib=4096, name="run 1")

    assert job["job_id"].startswith("j-") and job["status"] == "SUBMITTED"
    assert job["output_prefix"].endswith("/")
    assert json.loads(api.requests[-1]["body"]) == {
        "pipeline": "align", "inputs": ["s3://in/r1.fq", "s3://in/r2.fq"], "parameters": {"reference": "s3://ref/g.fa"},
        "queue": "on-demand", "vcpus": 2, "memory_mib": 4096, "name": "run 1"}
    assert api.requests[-1]["headers"]["Content-Type"] == "application/json"


def test_submit_leaves_out_what_the_caller_did_not_set(client, api):
    client.submit("fastq-stats", ["s3://in/a.fq"])

    assert json.loads(api.requests[-1]["body"]) == {"pipeline": "fastq-stats", "inputs": ["s3://in/a.fq"]}


def test_idempotency_key_header_returns_the_same_job(client, api):
    first = client.submit("fastq-stats", ["s3://in/a.fq"], idempotency_key="retry-me")
    second = client.submit("fastq-stats", ["s3://in/a.fq"], idempotency_key="retry-me")

    assert first["job_id"] == second["job_id"]
    assert api.requests[-1]["headers"]["Idempotency-Key"] == "retry-me"
    assert len(api.jobs) == 1


def test_submit_with_samples_makes_one_array_job(client, api):
    samples = [{"name": "s1", "inputs": ["s3://in/1.fq"]}, {"name": "s2", "inputs": ["s3://in/2.fq"]}]

    job = client.submit("fastq-stats", samples=samples)

    assert job["array_size"] == 2
    assert json.loads(api.requests[-1]["body"])["samples"] == samples


def test_get_returns_the_job_record_with_the_callers_identity(client):
    job_id = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]

    job = client.get(job_id)

    assert job["job_id"] == job_id
    assert job["submitted_by"] == "arn:aws:iam::123456789012:user/local-scientist"


def test_list_filters_and_pages_newest_first(client, api):
    ids = [client.submit("fastq-stats" if i % 2 else "align", ["s3://in/a.fq"])["job_id"] for i in range(5)]

    first = client.list(pipeline="fastq-stats", limit=1)
    everything = list(client.iter_jobs(limit=2))

    assert [j["job_id"] for j in first["jobs"]] == [ids[3]]
    assert first["next_token"] == "1"
    assert api.requests[-1]["queryStringParameters"] == {"next_token": "4", "limit": "2"}
    assert [j["job_id"] for j in everything] == list(reversed(ids))


def test_cancel_answers_and_a_finished_job_is_a_409(client, api):
    job_id = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]

    assert client.cancel(job_id)["status"] == "FAILED"
    with pytest.raises(LabBatchApiError) as refused:
        client.cancel(job_id)

    assert refused.value.status == 409
    assert refused.value.code == "job_finished"
    assert refused.value.details == {"status": "FAILED"}
    assert api.requests[-1]["httpMethod"] == "DELETE"


def test_pipelines_lists_each_with_defaults_and_limits(client):
    pipelines = client.pipelines()

    assert [p["name"] for p in pipelines] == ["fastq-stats", "align"]
    assert pipelines[0]["limits"]["max_vcpus"] == 8


def test_api_refusal_becomes_an_error_with_code_message_and_details(client, api):
    with pytest.raises(LabBatchApiError) as refused:
        client.submit("no-such-pipeline", ["s3://in/a.fq"])

    error = refused.value
    assert (error.status, error.code) == (422, "unknown_pipeline")
    assert error.message == "no pipeline 'no-such-pipeline'"
    assert error.details == {"field": "pipeline", "allowed": ["fastq-stats", "align"]}
    assert api.jobs == {}


def test_unknown_job_is_a_404(client):
    with pytest.raises(LabBatchApiError) as missing:
        client.get("j-00000000000000000000000099")

    assert (missing.value.status, missing.value.code) == (404, "job_not_found")


def test_job_ids_are_escaped_into_the_path(client, api):
    with pytest.raises(LabBatchApiError):
        client.get("../pipelines")

    assert api.requests[-1]["path"] == "/jobs/../pipelines"


def test_wrong_credentials_are_a_403_error(gateway):
    client = LabBatchClient(gateway.url, region=REGION, credentials=("AKIACLIENTTESTKEY001", "wrong"))

    with pytest.raises(LabBatchApiError) as forbidden:
        client.pipelines()

    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    assert "signature" in forbidden.value.message


def test_gateways_own_message_body_maps_to_a_code(gateway, api):
    gateway._handler = lambda event, context: 1 / 0
    client = LabBatchClient(gateway.url, region=REGION, credentials=(KEY, SECRET))

    with pytest.raises(LabBatchApiError) as failed:
        client.pipelines()

    assert (failed.value.status, failed.value.code, failed.value.message) == (
        502, "bad_gateway", "Internal server error")


@pytest.mark.parametrize(("status", "body", "code"), [
    (500, "<html>oops</html>", "http_500"),
    (200, "not json", "bad_response"),
    (200, "[1, 2]", "bad_response"),
    (503, json.dumps({"error": {"code": "throttled", "message": "slow down", "details": {}}}), "throttled"),
])
def test_bodies_that_are_not_the_apis_json_become_clean_errors(gateway, status, body, code):
    gateway._handler = lambda event, context: {"statusCode": status, "headers": {"Retry-After": "5"}, "body": body}
    client = LabBatchClient(gateway.url, region=REGION, credentials=(KEY, SECRET))

    with pytest.raises(LabBatchApiError) as failed:
        client.pipelines()

    assert (failed.value.status, failed.value.code) == (status, code)
    assert "\n" not in failed.value.message
    assert failed.value.retry_after == (5 if status >= 500 else None)


def test_connection_refused_is_a_clean_connection_error():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = LabBatchClient(f"http://127.0.0.1:{port}", region=REGION, credentials=(KEY, SECRET))

    with pytest.raises(LabBatchConnectionError) as unreachable:
        client.pipelines()

    assert unreachable.value.code == "unreachable"
    assert unreachable.value.message == f"cannot reach http://127.0.0.1:{port}: Connection refused"


def test_slow_api_is_a_timeout_error(gateway):
    gateway._handler = lambda event, context: time.sleep(1) or {"statusCode": 200, "body": "{}"}
    client = LabBatchClient(gateway.url, region=REGION, credentials=(KEY, SECRET), timeout=0.2)

    with pytest.raises(LabBatchConnectionError) as slow:
        client.pipelines()

    assert slow.value.code == "timeout"


def test_body_over_the_gateway_limit_is_refused_before_sending(client, api):
    with pytest.raises(LabBatchError) as too_big:
        client.submit("fastq-stats", ["s3://in/" + "x" * MAX_BODY_BYTES])

    assert too_big.value.code == "payload_too_large"
    assert api.requests == []


def test_wait_polls_until_every_job_has_finished(client, api):
    plain = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    array = client.submit("fastq-stats", samples=[{"name": f"s{i}", "inputs": ["s3://in/a.fq"]} for i in range(3)])
    api.scripts[plain] = [{"status": "RUNNING"}, {"status": "SUCCEEDED"}]
    api.scripts[array["job_id"]] = [
        {"status": "RUNNING", "children": {"RUNNING": 3}},
        {"status": "RUNNING", "children": {"RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1}},
        {"status": "FAILED", "children": {"SUCCEEDED": 2, "FAILED": 1}},
    ]
    seen: list[dict] = []

    records = client.wait([plain, array["job_id"]], interval=0, on_update=lambda r: seen.append(
        {job_id: record["status"] for job_id, record in r.items()}))

    assert records[plain]["status"] == "SUCCEEDED"
    assert records[array["job_id"]]["children"] == {"SUCCEEDED": 2, "FAILED": 1}
    assert seen[0] == {plain: "RUNNING", array["job_id"]: "RUNNING"}
    assert len(seen) == 3


def test_wait_gives_up_after_its_timeout(client, api):
    job_id = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]

    with pytest.raises(LabBatchError) as timed_out:
        client.wait([job_id], timeout=0.2, interval=0.05)

    assert timed_out.value.code == "timeout"
    assert timed_out.value.details == {"unfinished": [job_id]}


def test_missing_credentials_are_a_clean_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(LabBatchError) as missing:
        LabBatchClient("https://abc.execute-api.eu-west-1.amazonaws.com/prod", region="eu-west-1")

    assert missing.value.code == "no_credentials"


def test_wait_follows_a_job_to_the_recovery_labbatch_made(client, api):
    original = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    recovery = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    api.scripts[original] = [{"status": "FAILED", "failure": "spot_reclaimed", "recovered_by": recovery}]
    api.scripts[recovery] = [{"status": "RUNNING", "recovered_from": original},
                             {"status": "SUCCEEDED", "recovered_from": original}]

    records = client.wait([original], interval=0)

    assert records[original]["job_id"] == recovery and records[original]["status"] == "SUCCEEDED"
    assert records[original]["recovered_from"] == original


def test_wait_gives_the_updater_time_to_decide_on_a_recoverable_failure(client, api):
    job_id = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    refused = {"kind": "more_memory", "reason": "1.5x would exceed the lab's limit"}
    api.scripts[job_id] = [{"status": "FAILED", "failure": "out_of_memory"},
                           {"status": "FAILED", "failure": "out_of_memory"},
                           {"status": "FAILED", "failure": "out_of_memory", "recovery_refused": refused}]

    records = client.wait([job_id], interval=0)

    assert records[job_id]["recovery_refused"] == refused
    assert api.scripts[job_id] == []  # it polled until the decision was recorded


def test_wait_does_not_hold_an_application_failure_or_wait_forever_on_a_decision(client, api):
    app = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    api.scripts[app] = [{"status": "FAILED", "failure": "application"}, {"status": "RUNNING"}]
    assert client.wait([app], interval=0)[app]["status"] == "FAILED"
    undecided = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    api.jobs[undecided].update(status="FAILED", failure="infrastructure")
    began = time.monotonic()
    assert client.wait([undecided], interval=0.01, decision_grace=0.2)[undecided]["status"] == "FAILED"
    assert 0.2 <= time.monotonic() - began < 5


def test_wait_can_stop_at_the_original_job(client, api):
    original = client.submit("fastq-stats", ["s3://in/a.fq"])["job_id"]
    api.scripts[original] = [{"status": "FAILED", "failure": "spot_reclaimed", "recovered_by": "j-other"}]
    assert client.wait([original], interval=0, follow_recoveries=False)[original]["job_id"] == original
