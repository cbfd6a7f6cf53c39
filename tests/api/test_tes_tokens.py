"""TES bearer tokens: minted, listed and revoked through the job API (IAM callers only), stored
hashed as their own item type, checked by the Lambda authorizer (REQUEST events as API Gateway
sends them), and a token's owner recorded as `submitted_by` of the tasks sent with it."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import pytest

from tests.api_lab import CALLER, TABLE, FakeLambdaContext, api_event
from tests.api_tes_lab import task

from labbatch_contract import tokens

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/POST/ga4gh/tes/v1/tasks"


def authorizer_event(authorization: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return {"type": "REQUEST", "methodArn": METHOD_ARN, "resource": "/ga4gh/{proxy+}", "path": "/ga4gh/tes/v1/tasks",
            "httpMethod": "POST", "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {}, "pathParameters": {"proxy": "tes/v1/tasks"}, "stageVariables": {},
            "requestContext": {"accountId": "123456789012", "apiId": "abc123", "stage": "v1", "httpMethod": "POST",
                               "path": "/v1/ga4gh/tes/v1/tasks", "resourcePath": "/ga4gh/{proxy+}",
                               "identity": {"sourceIp": "192.0.2.10", "userAgent": "python-requests"}}}


def authorize(lab, authorization):
    from labbatch_authorizer import handler as tes_authorizer
    return tes_authorizer.decide(authorizer_event(authorization), tokens.dynamodb_getter(lab.dynamodb, TABLE))


def effect(answer: dict) -> str:
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Resource"] == METHOD_ARN and statement["Action"] == "execute-api:Invoke"
    return statement["Effect"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def mint(lab, **body) -> dict:
    answer = lab.call("POST", "/tokens", body)
    assert answer.status == 201, answer.body
    return answer.body


def test_create_list_revoke(lab):
    made = mint(lab, name="snakemake on hpc", expires_days=30)
    assert made["token"].startswith(f"lbt_{made['id']}_") and tokens.parse(made["token"])
    assert made["owner"] == CALLER and made["name"] == "snakemake on hpc"
    created = datetime.fromisoformat(made["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00"))
    assert expires - created == timedelta(days=30)
    other = mint(lab)
    assert other["expires_at"] is None and other["id"] != made["id"]

    listed = lab.call("GET", "/tokens").body["tokens"]
    assert {t["id"] for t in listed} == {made["id"], other["id"]}
    assert all("token" not in t and "hash" not in t and "salt" not in t for t in listed)
    # Stored hashed, its own item type: nothing of the secret in the table, never listed as a job.
    items = lab.ledger_items()
    assert {i["record_type"] for i in items} == {"token"}
    secret = made["token"][len(f"lbt_{made['id']}_"):]  # the secret itself may hold "_"
    assert secret not in json.dumps(items)
    assert lab.call("GET", "/jobs").body["jobs"] == []

    revoked = lab.call("DELETE", f"/tokens/{made['id']}")
    assert revoked.status == 200 and revoked.body["revoked_at"]
    assert lab.call("DELETE", "/tokens/0123456789abcdef").status == 404
    assert lab.call("DELETE", "/tokens/not-an-id").status == 404
    listed = {t["id"]: t for t in lab.call("GET", "/tokens").body["tokens"]}
    assert listed[made["id"]]["revoked_at"] and listed[other["id"]]["revoked_at"] is None


@pytest.mark.parametrize("body,field", [({"expires_days": 0}, "expires_days"), ({"name": ""}, "name"),
                                         ({"colour": "red"}, "colour")])
def test_create_refuses_bad_bodies(lab, body, field):
    answer = lab.call("POST", "/tokens", body)
    assert answer.status == 422 and answer.error["details"]["field"] == field


def test_only_iam_callers_manage_tokens(lab):
    from labbatch_api import handler as job_api
    event = api_event("POST", "/tokens", {})
    event["requestContext"]["identity"].pop("userArn")
    event["requestContext"]["authorizer"] = {"owner": CALLER, "token_id": "0123456789abcdef"}
    answer = job_api.lambda_handler(event, FakeLambdaContext())
    assert answer["statusCode"] == 403
    assert lab.ledger_items() == []


def test_authorizer_allows_live_tokens_bearer_or_basic(lab):
    made = mint(lab, name="nf")
    for header in (f"Bearer {made['token']}", basic("None", made["token"]), basic("alice", made["token"])):
        answer = authorize(lab, header)
        assert effect(answer) == "Allow"
        assert answer["principalId"] == CALLER
        assert answer["context"] == {"owner": CALLER, "token_id": made["id"]}


def test_authorizer_denies_missing_malformed_unknown_revoked_expired(lab):
    live = mint(lab)
    token_id, secret = tokens.parse(live["token"])
    wrong_secret = f"lbt_{token_id}_{'A' * 43}"
    unknown = f"lbt_{'0' * 16}_{secret}"
    revoked = mint(lab)
    lab.call("DELETE", f"/tokens/{revoked['id']}")
    expired = mint(lab, expires_days=1)
    lab.dynamodb.update_item(TableName=TABLE, Key={"job_id": {"S": tokens.token_key(expired["id"])}},
                             UpdateExpression="SET expires_at_iso = :t",
                             ExpressionAttributeValues={":t": {"S": "2020-01-01T00:00:00.000000Z"}})
    for header in (None, "", "Bearer", "Bearer nonsense", f"Token {live['token']}", basic("None", "None"),
                   "Basic !!!notbase64", f"Bearer {wrong_secret}", f"Bearer {unknown}",
                   f"Bearer {revoked['token']}", basic("x", expired["token"]),
                   "AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=00"):
        answer = authorize(lab, header)
        assert effect(answer) == "Deny", header
        assert "context" not in answer
    assert effect(authorize(lab, f"Bearer {live['token']}")) == "Allow"


def test_a_job_key_is_never_taken_for_a_token():
    record = {"job_id": "token#0123456789abcdef", "record_type": "job", "salt": "", "hash": tokens.digest("", "x" * 43)}
    assert tokens.check(f"lbt_0123456789abcdef_{'x' * 43}", lambda key: record) == (None, "unknown")


def test_task_sent_with_a_token_records_its_owner(tes_lab):  # noqa: F811
    from labbatch_api import handler as job_api
    made = mint(tes_lab, name="engine")
    tes_lab.put_input(task()["inputs"][0]["url"])
    event = api_event("POST", "/ga4gh/tes/v1/tasks", task())
    event["requestContext"]["identity"].pop("userArn")
    event["requestContext"]["authorizer"] = {"principalId": CALLER, "owner": CALLER, "token_id": made["id"],
                                             "integrationLatency": 3}
    answer = job_api.lambda_handler(event, FakeLambdaContext())
    assert answer["statusCode"] == 200, answer["body"]
    task_id = json.loads(answer["body"])["id"]
    (record,) = tes_lab.job_records()
    assert record["job_id"] == task_id and record["submitted_by"] == CALLER
    listed = {t["id"]: t for t in tes_lab.call("GET", "/tokens").body["tokens"]}
    assert listed[made["id"]]["last_used_at"]
    # A token opens TES only: the job routes still want an IAM caller.
    event = api_event("POST", "/jobs", {"pipeline": "x"})
    event["requestContext"]["identity"].pop("userArn")
    event["requestContext"]["authorizer"] = {"owner": CALLER, "token_id": made["id"]}
    assert job_api.lambda_handler(event, FakeLambdaContext())["statusCode"] in (403, 422)


def test_py_tes_0_4_service_info_path(tes_lab):  # noqa: F811
    answer = tes_lab.call("GET", "/ga4gh/tes/v1/tasks/service-info")
    assert answer.status == 200 and "storage" in answer.body
