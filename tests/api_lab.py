"""Helpers and fixtures for the job API and status updater tests: a moto AWS with the lab's
buckets, ledger table (the key schema the API stack creates) and Batch queues."""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.retries.standard
import pytest
from moto import mock_aws

from labbatch.lab.api_settings import handler_settings
from labbatch.lab.loader import load_lab

REGION = "us-east-1"
CALLER = "arn:aws:sts::123456789012:assumed-role/LabScientist/alice"
ACCOUNT = "123456789012"
# The settings the stack would give the handler, from the shipped example lab: the lab config
# is the one source of names and limits, so the tests cannot drift from what is deployed.
SETTINGS = handler_settings(load_lab(Path(__file__).resolve().parents[1] / "labs" / "example.yaml"), ACCOUNT, REGION)
INPUTS_BUCKET = SETTINGS["buckets"]["inputs"]
REFERENCES_BUCKET = SETTINGS["buckets"]["references"]
RESULTS_BUCKET = SETTINGS["buckets"]["results"]
TABLE = SETTINGS["table"]
SPOT_QUEUE = SETTINGS["queues"]["spot"]
ON_DEMAND_QUEUE = SETTINGS["queues"]["on-demand"]

READS = f"s3://{INPUTS_BUCKET}/runs/r1/sample-a.fastq.gz"
READS_B = f"s3://{INPUTS_BUCKET}/runs/r1/sample-b.fastq.gz"
REFERENCE = f"s3://{REFERENCES_BUCKET}/genomes/ecoli.fa"
# One session for the whole run: each new session re-reads botocore's service models from
# disk (~40 ms a client), which would dominate these tests. The handlers' boto3.client()
# calls use it too (it is installed as boto3's default session in the `lab` fixture).
SESSION = boto3.session.Session(region_name=REGION)
ALL_BATCH_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "POWERTOOLS_IDEMPOTENCY_DISABLED"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(SETTINGS, separators=(",", ":")))
    # The clients' retries back off for real in AWS; here they would only slow the tests.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


class FakeLambdaContext:
    function_name = "labbatch-example-api"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:labbatch-example-api"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


class Lab:
    """The mocked lab: AWS clients plus helpers to call the handlers and inspect state."""

    def __init__(self):
        self.s3 = SESSION.client("s3", region_name=REGION)
        self.batch = SESSION.client("batch", region_name=REGION)
        self.dynamodb = SESSION.client("dynamodb", region_name=REGION)

    # --- calling the API handler -------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        caller: str | None = CALLER,
        raw_body: str | None = None,
    ) -> ApiAnswer:
        from labbatch_api import handler as job_api
        event = api_event(method, path, body, headers=headers, query=query, caller=caller, raw_body=raw_body)
        answer = job_api.lambda_handler(event, FakeLambdaContext())
        headers_out = dict(answer.get("headers") or {})
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers_out.setdefault(name, values[-1])
        text = answer["body"]
        if answer.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return ApiAnswer(answer["statusCode"], json.loads(text) if text else None, headers_out)

    def submit(self, body: dict[str, Any], **kwargs) -> ApiAnswer:
        return self.call("POST", "/jobs", body, **kwargs)

    # --- calling the status updater ----------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        from labbatch_status import handler as job_status
        return job_status.lambda_handler(event, FakeLambdaContext())

    # --- inspecting state --------------------------------------------------------------
    def put_input(self, uri: str, size: int = 1024) -> None:
        bucket, key = uri[len("s3://") :].split("/", 1)
        self.s3.put_object(Bucket=bucket, Key=key, Body=b"N" * size)

    def batch_jobs(self) -> list[dict[str, Any]]:
        """Every Batch job in the lab's queues (parents only), described."""
        ids = set()
        for queue in (SPOT_QUEUE, ON_DEMAND_QUEUE):
            for status in ALL_BATCH_STATUSES:
                for summary in self.batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]:
                    ids.add(summary["jobId"].split(":")[0])
        return self.batch.describe_jobs(jobs=sorted(ids))["jobs"] if ids else []

    def ledger_items(self) -> list[dict[str, Any]]:
        from labbatch_contract.ledger import from_item

        return [from_item(i) for i in self.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]]

    def job_records(self) -> list[dict[str, Any]]:
        return [item for item in self.ledger_items() if item.get("record_type") == "job"]

    def assert_nothing_created(self) -> None:
        assert self.batch_jobs() == []
        assert self.ledger_items() == []


def api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    caller: str | None = CALLER,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as IAM-authorised requests arrive."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    identity: dict[str, Any] = {"sourceIp": "192.0.2.10", "userAgent": "labbatch-tests"}
    if caller:
        identity.update(userArn=caller, caller="AROAEXAMPLE:alice", accountId="123456789012")
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "stage": "prod",
            "httpMethod": method,
            "path": f"/prod{path}",
            "resourcePath": path,
            "requestId": str(uuid.uuid4()),
            "identity": identity,
        },
        "body": text,
        "isBase64Encoded": False,
    }


def create_lab_resources() -> None:
    s3 = SESSION.client("s3", region_name=REGION)
    for bucket in (INPUTS_BUCKET, REFERENCES_BUCKET, RESULTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    dynamodb = SESSION.client("dynamodb", region_name=REGION)
    # The key schema the API stack creates (see the contract in lambda/labbatch_api/ledger.py).
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "job_id", "AttributeType": "S"},
            {"AttributeName": "record_type", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_created",
                "KeySchema": [
                    {"AttributeName": "record_type", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    iam = SESSION.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = SESSION.client("batch", region_name=REGION)
    environment = batch.create_compute_environment(
        computeEnvironmentName="labbatch-example-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    for queue in (SPOT_QUEUE, ON_DEMAND_QUEUE):
        batch.create_job_queue(
            jobQueueName=queue,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )
    for pipeline in SETTINGS["pipelines"].values():
        batch.register_job_definition(
            jobDefinitionName=pipeline["job_definition"],
            type="container",
            containerProperties={
                "image": "public.ecr.aws/labbatch/runner:latest",
                "command": ["labbatch-runner"],
                "resourceRequirements": [
                    {"type": "VCPU", "value": str(pipeline["vcpus"])},
                    {"type": "MEMORY", "value": str(pipeline["memory_mib"])},
                ],
            },
        )


@pytest.fixture
def lab():
    from labbatch_api import handler as job_api
    from labbatch_status import handler as job_status
    with mock_aws(config={"batch": {"use_docker": False}}):
        boto3.DEFAULT_SESSION = SESSION
        create_lab_resources()
        job_api.runtime.cache_clear()
        job_status.status_ledger.cache_clear()
        job_status._SAMPLE_LISTS.clear()
        lab = Lab()
        for uri in (READS, READS_B, REFERENCE):
            lab.put_input(uri)
        yield lab
        boto3.DEFAULT_SESSION = None
        job_api.runtime.cache_clear()
        job_status.status_ledger.cache_clear()


# --- watching and breaking the handler's own AWS clients -----------------------------------

def api_clients():
    from labbatch_api import handler as job_api
    return job_api.runtime().clients


def capture_calls(client, operation: str) -> list[dict[str, Any]]:
    """The parameters of every call the client makes to `operation`, as the handler passed them."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.{client.meta.service_model.service_id.hyphenize()}.{operation}",
        lambda params, **_: calls.append(json.loads(json.dumps(params, default=str))),
    )
    return calls


class _RawBody:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_):
        yield self._data

    def read(self, *_):
        return self._data


def aws_error(code: str, status: int, *, protocol: str = "rest-json", message: str = "injected") -> Any:
    """An HTTP error response as the service would send it (botocore parses it, then retries)."""
    from botocore.awsrequest import AWSResponse

    if protocol == "json":  # DynamoDB
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0"}
    elif protocol == "head":  # S3 HEAD: status only
        body, headers = b"", {}
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/json", "x-amzn-errortype": code}
    return AWSResponse("https://injected.example", status, headers, _RawBody(body))


def inject(client, operation: str, responses: list[Any]) -> list[int]:
    """Answer the next len(responses) HTTP attempts of `operation` with these responses
    (None lets the attempt through to moto). Returns a one-item list counting attempts."""
    pending = list(responses)
    attempts = [0]

    def before_send(request, **_):
        attempts[0] += 1
        if not pending or pending[0] is None:
            return pending.pop(0) if pending else None
        # botocore calls every before-send handler, moto's too: point this attempt somewhere
        # moto does not serve, so the injected answer is the only thing that happens.
        request.url = "https://fault-injected.invalid/"
        return pending.pop(0)

    client.meta.events.register_first(
        f"before-send.{client.meta.service_model.service_id.hyphenize()}.{operation}", before_send
    )
    return attempts


def batch_environment(job: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["value"] for v in job["container"]["environment"]}


def assert_ledger_agrees_with_batch(lab: Lab) -> None:
    """Every Batch job has exactly one record naming it, and every record without a Batch
    job says why (FAILED before submission)."""
    jobs = {job["jobId"]: job for job in lab.batch_jobs()}
    records = lab.job_records()
    by_batch_id = {r["batch_job_id"]: r for r in records if r.get("batch_job_id")}
    assert len(by_batch_id) == len([r for r in records if r.get("batch_job_id")])
    assert set(by_batch_id) == set(jobs), "every Batch job has a ledger record and vice versa"
    for batch_job_id, record in by_batch_id.items():
        assert batch_environment(jobs[batch_job_id])["LABBATCH_JOB_ID"] == record["job_id"]
    for record in records:
        if not record.get("batch_job_id"):
            assert record["status"] == "FAILED"
            assert record["submit_error"]["outcome"] == "not_submitted"
