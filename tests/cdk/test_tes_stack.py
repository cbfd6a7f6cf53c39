"""A lab with a TES endpoint (tes.allowed_images): TES paths reach the handler through the greedy
proxy resource (API Gateway cannot route a path part with ':'), and the handler may register and
submit only job definitions under its own lab's TES prefix, passing only its lab's job roles."""

from __future__ import annotations

import json

import pytest

from labbatch.lab.config import Api, Tes
from labbatch.lab.loader import parse_lab
from tests.cdk.conftest import _synth, resources, tes_data
from tests.cdk.test_api_stack import as_list, statements_of
from tests.cdk.test_lab_isolation import render


@pytest.fixture(scope="module")
def tes_labs(cdk_context):
    # `flow-tes` extends `flow`'s name: its definitions must stay out of `flow`'s grants.
    # `flow-tes` lists its API principals: its resource policy denies everyone else, but the TES subtree.
    listed = {**tes_data("flow-tes"), "api": {"principals": ["arn:aws:iam::111122223333:role/FlowScientist"]}}
    return _synth(cdk_context, [parse_lab(tes_data("flow"), "flow.yaml"), parse_lab(listed, "flow-tes.yaml")])


def test_tes_subtree_has_the_token_authorizer_and_everything_else_stays_iam(tes_labs):
    api = tes_labs["flow"].api_json
    parts = {k: r["Properties"]["PathPart"] for k, r in resources(api, "AWS::ApiGateway::Resource").items()}
    # The root's greedy resource for the job API, and /ga4gh/{proxy+} and /v1/{proxy+} for TES
    # (greedy: /ga4gh/tes/v1/tasks/{id}:cancel needs no part of its own; /v1/... is where clients
    # that append /v1/tasks land when given the lab's own URL).
    assert sorted(parts.values()) == ["ga4gh", "v1", "{proxy+}", "{proxy+}", "{proxy+}"]
    roots = [k for k, p in parts.items() if p in ("ga4gh", "v1")]
    tes_proxies = [k for k, r in resources(api, "AWS::ApiGateway::Resource").items()
                   if r["Properties"]["ParentId"] in [{"Ref": root} for root in roots]]
    assert len(tes_proxies) == 2
    methods = resources(api, "AWS::ApiGateway::Method")
    assert {m["Properties"]["HttpMethod"] for m in methods.values()} == {"ANY"}
    tes_methods = [m for m in methods.values() if m["Properties"]["ResourceId"] in [{"Ref": k} for k in tes_proxies]]
    others = [m for m in methods.values() if m not in tes_methods]
    assert len(tes_methods) == 2 and len(others) == 2  # the root and its {proxy+}
    assert all(m["Properties"]["AuthorizationType"] == "CUSTOM" for m in tes_methods)
    assert all(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in others)
    (authorizer_id, authorizer) = next(iter(resources(api, "AWS::ApiGateway::Authorizer").items()))
    assert all(m["Properties"]["AuthorizerId"] == {"Ref": authorizer_id} for m in tes_methods)
    assert authorizer["Properties"]["Type"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 0  # a revoke takes effect at once
    assert "TesAuthorizer" in json.dumps(authorizer["Properties"]["AuthorizerUri"])


def test_authorizer_role_reads_only_the_ledger(tes_labs):
    api = tes_labs["flow"].api_json
    statements = statements_of(api, "TesAuthorizer")
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert actions <= {"dynamodb:GetItem", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    (read,) = [s for s in statements if "dynamodb:GetItem" in as_list(s["Action"])]
    assert render(read["Resource"]).endswith(":table/labbatch-flow-jobs")
    function = next(v for k, v in resources(api, "AWS::Lambda::Function").items() if "TesAuthorizer" in k)
    assert function["Properties"]["Handler"] == "labbatch_authorizer.handler.lambda_handler"
    assert render(function["Properties"]["Environment"]["Variables"]["LABBATCH_TABLE"]) == "labbatch-flow-jobs"


def test_the_tes_subtree_is_throttled_apart_and_above_the_job_api(tes_labs):
    """Engines poll each task (Snakemake up to 10 a second per workflow) and abort on a 429."""
    (_, stage) = next(iter(resources(tes_labs["flow"].api_json, "AWS::ApiGateway::Stage").items()))
    settings = {(m["ResourcePath"], m["HttpMethod"]): m for m in stage["Properties"]["MethodSettings"]}
    everything, tes_routes = settings[("/*", "*")], settings[("/~1ga4gh~1{proxy+}", "*")]
    assert {**settings[("/~1v1~1{proxy+}", "*")], "ResourcePath": "/~1ga4gh~1{proxy+}"} == tes_routes
    defaults = Tes(allowed_images=["x"])
    assert (tes_routes["ThrottlingRateLimit"], tes_routes["ThrottlingBurstLimit"]) == (
        defaults.throttle_rate_per_second, defaults.throttle_burst)
    assert tes_routes["ThrottlingRateLimit"] > everything["ThrottlingRateLimit"] == Api().throttle_rate_per_second


def test_the_token_store_is_encrypted_recoverable_and_kept(tes_labs):
    """Tokens are ledger records (labbatch_contract.tokens), so the store is the table the
    authorizer reads: encrypted, point-in-time recoverable, and kept when the stack goes."""
    storage = tes_labs["flow"].storage_json
    tables = {k: v for k, v in resources(storage, "AWS::DynamoDB::Table").items()
              if v["Properties"].get("TableName") == "labbatch-flow-jobs"}
    ((_, table),) = tables.items()
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


TES_PATHS = ["execute-api:/*/*/ga4gh/*", "execute-api:/*/*/v1/*"]


@pytest.mark.parametrize("lab,denies", [("flow", 0), ("flow-tes", 1)])
def test_resource_policy_opens_only_the_tes_subtree_to_token_callers(tes_labs, lab, denies):
    (_, rest_api) = next(iter(resources(tes_labs[lab].api_json, "AWS::ApiGateway::RestApi").items()))
    statements = rest_api["Properties"]["Policy"]["Statement"]
    anyone = [s for s in statements if s["Effect"] == "Allow" and s["Principal"] in ({"AWS": "*"}, "*")]
    assert [s["Resource"] for s in anyone] == [TES_PATHS]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert len(deny) == denies
    # The listed-principals fence covers every path but the TES subtree, where the token authorizer decides.
    assert all(s["NotResource"] == TES_PATHS and "Resource" not in s for s in deny)


def test_labs_without_tes_have_no_authorizer(synthesized):
    api = synthesized["example"].api_json
    assert resources(api, "AWS::ApiGateway::Authorizer") == {}
    assert all(m["Properties"]["AuthorizationType"] == "AWS_IAM"
               for m in resources(api, "AWS::ApiGateway::Method").values())


def test_handler_registers_and_submits_only_its_labs_tes_definitions(tes_labs):
    grants: dict[str, list] = {}
    for stmt in statements_of(tes_labs["flow"].api_json, "Handler"):
        for action in as_list(stmt["Action"]):
            grants.setdefault(action, []).append(stmt)
    (register,) = grants["batch:RegisterJobDefinition"]
    assert render(register["Resource"]).endswith(":job-definition/labbatch-flow_tes-*")
    submit_targets = [render(r) for s in grants["batch:SubmitJob"] for r in as_list(s["Resource"])]
    assert any(t.endswith(":job-definition/labbatch-flow_tes-*") for t in submit_targets)
    assert not any("flow-tes" in t for t in submit_targets)
    (pass_role,) = grants["iam:PassRole"]
    assert sorted(render(r).rsplit("/", 1)[1] for r in pass_role["Resource"]) == ["labbatch-flow-job",
                                                                                  "labbatch-flow-job-execution"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    tagging = [s for s in grants["batch:TagResource"] if "job-definition" in render(s["Resource"])]
    assert tagging and tagging[0]["Condition"] == {"StringEquals": {"aws:RequestTag/labbatch:lab": "flow"}}


def test_job_roles_have_the_names_the_handler_passes_and_write_tes_outputs(tes_labs):
    compute = tes_labs["flow"].compute_json
    names = {r["Properties"].get("RoleName") for r in resources(compute, "AWS::IAM::Role").values()}
    assert {"labbatch-flow-job", "labbatch-flow-job-execution"} <= names
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements_of(compute, "JobRole"))
    granted = job_role_grants(compute)
    results = "labbatch-flow-results-"
    # Engines inside a task (Snakemake's S3 storage) use tes/ as their work prefix: read, write,
    # delete and list it, and HeadBucket the results bucket. Nothing else of results but jobs/ and
    # Nextflow's work prefix (tests/cdk/test_nextflow_access.py).
    tes_objects = {r for r in granted["s3:GetObject"] if results in r and r.endswith("/tes/*")}
    assert len(tes_objects) == 1
    bucket_objects = next(iter(tes_objects))[:-len("tes/*")]
    assert {r for r in granted["s3:GetObject"] if results in r} == tes_objects | {bucket_objects + "nextflow/*"}
    assert {r for r in granted["s3:PutObject"] if results in r} == tes_objects | {
        bucket_objects + "jobs/*", bucket_objects + "nextflow/*"}
    assert granted["s3:DeleteObject"] == tes_objects | {bucket_objects + "nextflow/*"}
    assert any(r.startswith("arn:") and r.split(":::")[-1].startswith(results) and "/" not in r.split(":::")[-1]
               for r in granted["s3:ListBucket"])


def job_role_grants(compute: dict) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for statement in statements_of(compute, "JobRole"):
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(render(r) for r in as_list(statement["Resource"]))
    return granted


def test_without_tes_the_job_role_deletes_only_in_nextflows_work_prefix(synthesized):
    granted = job_role_grants(synthesized["example"].compute_json)
    (deletes,) = granted["s3:DeleteObject"]
    assert "labbatch-example-results-" in deletes and deletes.endswith("/nextflow/*")
    # Nextflow's nxf_s3_download runs `aws s3 ls` to tell a file from a folder: the results bucket is listed.
    assert any("-results-" in r for r in granted["s3:ListBucket"])


def test_settings_turn_tes_on_with_the_roles(tes_labs):
    api = tes_labs["flow"].api_json
    handler = next(v for k, v in resources(api, "AWS::Lambda::Function").items() if "Handler" in k)
    settings = render(handler["Properties"]["Environment"]["Variables"]["LABBATCH_SETTINGS"])
    assert '"allowed_images":["quay.io/biocontainers/"]' in settings
    assert "role/labbatch-flow-job" in settings
