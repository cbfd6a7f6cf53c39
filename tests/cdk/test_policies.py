"""Every policy of every stack: labs stay inside their own walls, and wildcards are few and named."""

from __future__ import annotations

import json
import re

import pytest

from tests.cdk.conftest import resources
from tests.cdk.test_lab_isolation import render

POLICY_TYPES = {"AWS::IAM::Policy": "PolicyDocument", "AWS::S3::BucketPolicy": "PolicyDocument",
                "AWS::SNS::TopicPolicy": "PolicyDocument", "AWS::SQS::QueuePolicy": "PolicyDocument",
                "AWS::ApiGateway::RestApi": "Policy"}
# The only places an Allow may name every resource: the API has no resource-level permission.
ALLOWED_UNSCOPED = {
    "ecr:GetAuthorizationToken",  # ECR registry login for image pulls
    "batch:DescribeJobs", "batch:ListJobs",  # Batch's read calls take no resource ARN
    "batch:DescribeJobQueues", "batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords",  # X-Ray tracing of the Lambdas
}
# Stateful resources keep these logical IDs forever: a changed ID would replace (and, being
# RETAIN, orphan) the lab's data.
PINNED_STATEFUL = {
    "Storage": {"AWS::S3::Bucket": {"BucketsAccessLogsA5F88218", "BucketsInputs2121D50A", "BucketsReferencesA6AE63EC",
                                    "BucketsResultsB59121EA"},
                "AWS::DynamoDB::Table": {"JobLedgerTable532EFCFA"}},
}


def statements(lab) -> list[tuple[str, str, dict]]:
    out = []
    for part, template in lab.templates().items():
        for logical_id, res in template["Resources"].items():
            key = POLICY_TYPES.get(res["Type"])
            docs = []
            if key and key in res["Properties"]:
                docs.append(res["Properties"][key])
            if res["Type"] == "AWS::IAM::Role":
                docs += [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]
            for doc in docs:
                out += [(part, logical_id, s) for s in doc["Statement"]]
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("lab,other", [("example", "genomics-core"), ("genomics-core", "example")])
def test_no_policy_of_one_lab_names_anything_of_another(synthesized, lab, other):
    found = statements(synthesized[lab])
    assert len(found) > 20
    for part, logical_id, statement in found:
        text = render(statement.get("Resource", "")) + json.dumps(statement.get("Condition", {}))
        assert f"labbatch-{other}-" not in text and f"/labbatch/{other}/" not in text, (part, logical_id)


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_every_named_resource_in_a_policy_belongs_to_the_lab(synthesized, lab):
    checked = 0
    for part, logical_id, statement in statements(synthesized[lab]):
        for resource in as_list(statement.get("Resource", [])):
            text = render(resource)
            names = re.findall(r"(?:s3:::|job-queue/|job-definition/|table/|log-group:)([a-z0-9-]+)", text)
            for name in names:
                assert name.startswith(f"labbatch-{lab}-") or name.startswith(f"/labbatch/{lab}/"), \
                    (part, logical_id, text)
                checked += 1
    assert checked >= 10  # buckets, queues, job definitions and the table are all named somewhere


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_no_allow_grants_every_action_and_unscoped_resources_are_named(synthesized, lab):
    for part, logical_id, statement in statements(synthesized[lab]):
        if statement["Effect"] != "Allow":
            continue  # the TLS-only denies say s3:*/sqs:*/sns:* on purpose
        actions = as_list(statement.get("Action", []))
        assert not any(a == "*" or a.endswith(":*") for a in actions), (part, logical_id, actions)
        if "*" in as_list(statement.get("Resource", [])):
            assert set(actions) <= ALLOWED_UNSCOPED, (part, logical_id, actions)


def test_every_principal_of_a_resource_policy_is_a_service_the_lab_or_a_listed_principal(synthesized):
    allowed_principals = {"arn:aws:iam::111122223333:role/GenomicsScientist",
                          "arn:aws:iam::111122223333:role/GenomicsPipelineBot"}
    for part, logical_id, statement in statements(synthesized["genomics-core"]):
        principal = statement.get("Principal")
        if principal is None or statement["Effect"] == "Deny":
            continue
        if "Service" in principal:
            continue
        assert set(as_list(principal["AWS"])) <= allowed_principals, (part, logical_id, principal)


@pytest.mark.parametrize("lab", ["example", "genomics-core"])
def test_stateful_resources_keep_their_logical_ids_and_are_retained(synthesized, lab):
    for part, by_type in PINNED_STATEFUL.items():
        template = synthesized[lab].templates()[part]
        for cfn_type, ids in by_type.items():
            found = resources(template, cfn_type)
            assert set(found) == ids
            for res in found.values():
                assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
