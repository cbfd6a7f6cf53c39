"""A lab with a TES endpoint (tes.allowed_images): TES paths reach the handler through the greedy
proxy resource (API Gateway cannot route a path part with ':'), and the handler may register and
submit only job definitions under its own lab's TES prefix, passing only its lab's job roles."""

from __future__ import annotations

import json

import pytest

from labbatch.loader import parse_lab
from tests.cdk.conftest import _synth, resources, tes_data
from tests.cdk.test_api_stack import as_list, statements_of
from tests.cdk.test_lab_isolation import render


@pytest.fixture(scope="module")
def tes_labs(cdk_context):
    # `flow-tes` extends `flow`'s name: its definitions must stay out of `flow`'s grants.
    return _synth(cdk_context, [parse_lab(tes_data("flow"), "flow.yaml"), parse_lab(tes_data("flow-tes"), "flow-tes.yaml")])


def test_tes_paths_reach_the_handler_through_the_greedy_proxy(tes_labs):
    api = tes_labs["flow"].api_json
    paths = [r["Properties"]["PathPart"] for r in resources(api, "AWS::ApiGateway::Resource").values()]
    assert paths == ["{proxy+}"]  # one greedy resource: /ga4gh/tes/v1/tasks/{id}:cancel needs no part of its own
    methods = list(resources(api, "AWS::ApiGateway::Method").values())
    assert {m["Properties"]["HttpMethod"] for m in methods} == {"ANY"}
    assert all(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in methods)


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
    policies = json.dumps([p["Properties"]["PolicyDocument"] for p in resources(compute, "AWS::IAM::Policy").values()])
    assert "/tes/*" in policies


def test_settings_turn_tes_on_with_the_roles(tes_labs):
    api = tes_labs["flow"].api_json
    handler = next(v for k, v in resources(api, "AWS::Lambda::Function").items() if "Handler" in k)
    settings = render(handler["Properties"]["Environment"]["Variables"]["LABBATCH_SETTINGS"])
    assert '"allowed_images":["quay.io/biocontainers/"]' in settings
    assert "role/labbatch-flow-job" in settings
