"""The API stack: IAM auth everywhere, principals fenced by the resource policy, least-privilege roles."""

from __future__ import annotations

import json

import pytest

from labbatch.lab.api_settings import handler_settings
from labbatch.lab.loader import load_labs
from tests.cdk.conftest import only, resources
from tests.cdk.test_lab_isolation import render
from tests.conftest import LABS_DIR


def statements_of(template: dict, role_fragment: str) -> list[dict]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if any(role_fragment in r["Ref"] for r in policy["Properties"]["Roles"]):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("lab", ["example", "genomics-core"])
def test_every_method_requires_iam_auth(synthesized, lab):
    methods = resources(synthesized[lab].api_json, "AWS::ApiGateway::Method")
    assert len(methods) >= 2  # ANY / and ANY /{proxy+}
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"


def test_resource_policy_admits_only_the_configured_principals(synthesized):
    _, api = only(synthesized["genomics-core"].api_json, "AWS::ApiGateway::RestApi")
    allow, deny = api["Properties"]["Policy"]["Statement"]
    listed = ["arn:aws:iam::111122223333:role/GenomicsScientist", "arn:aws:iam::111122223333:role/GenomicsPipelineBot"]
    assert allow["Effect"] == "Allow" and sorted(allow["Principal"]["AWS"]) == sorted(listed)
    assert deny == {"Action": "execute-api:Invoke", "Effect": "Deny", "Principal": {"AWS": "*"},
                    "Resource": "execute-api:/*",
                    "Condition": {"StringNotEquals": {"aws:PrincipalArn": listed}}}


def test_without_principals_only_the_labs_account_is_admitted(synthesized):
    _, api = only(synthesized["example"].api_json, "AWS::ApiGateway::RestApi")
    [allow] = api["Properties"]["Policy"]["Statement"]
    assert allow["Effect"] == "Allow"
    assert ":root" in render(allow["Principal"]["AWS"]) and "${AWS::AccountId}" in render(allow["Principal"]["AWS"])


def test_stage_is_throttled_and_access_logged(synthesized):
    t = synthesized["genomics-core"].api_json
    _, stage = only(t, "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    [settings] = props["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (50, 100)
    access_log_group = props["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1][1]["Ref"]
    assert t["Resources"][access_log_group]["Properties"]["RetentionInDays"] == 90


def test_endpoint_is_a_stack_output(synthesized):
    outputs = synthesized["example"].api_json["Outputs"]
    assert "execute-api" in render(outputs["ApiEndpoint"]["Value"])


def test_handler_gets_the_labs_settings(synthesized):
    t = synthesized["genomics-core"].api_json
    handler = next(v for k, v in resources(t, "AWS::Lambda::Function").items() if "Handler" in k)
    settings = json.loads(render(handler["Properties"]["Environment"]["Variables"]["LABBATCH_SETTINGS"]))
    lab = load_labs(LABS_DIR, only="genomics-core")[0]
    assert settings == handler_settings(lab, "111122223333", "eu-west-1")
    assert handler["Properties"]["Handler"] == "labbatch_api.handler.lambda_handler"
    assert handler["Properties"]["Runtime"] == "python3.14"


def test_powertools_layer_is_resolved_at_deploy_not_synth(synthesized):
    params = synthesized["example"].api_json["Parameters"]
    assert any(p["Default"] == "/aws/service/powertools/python/x86_64/python3.14/3.37.0" for p in params.values())


# Exactly the lab's queues (every pool's) and its job definitions by name (any revision), never a name prefix.
CORE_SUBMIT_TARGETS = sorted(
    [f"arn:aws:batch:eu-west-1:111122223333:job-definition/labbatch-genomics-core-{p}{rev}"
     for p in ("basecall", "bwa-mem", "fastq-stats", "salmon-quant", "star-align") for rev in ("", ":*")]
    + [f"arn:aws:batch:eu-west-1:111122223333:job-queue/labbatch-genomics-core-{pool}{queue}"
       for pool in ("", "memory-", "gpu-") for queue in ("on-demand", "spot")])


def test_handler_can_submit_only_to_its_own_queues_and_job_definitions(synthesized):
    for stmt in statements_of(synthesized["genomics-core"].api_json, "Handler"):
        actions = as_list(stmt["Action"])
        if "batch:SubmitJob" in actions:
            assert sorted(as_list(stmt["Resource"])) == CORE_SUBMIT_TARGETS
        elif {"batch:CancelJob", "batch:TerminateJob"} & set(actions):
            assert stmt["Condition"] == {"StringEquals": {"aws:ResourceTag/labbatch:lab": "genomics-core"}}
        elif "batch:TagResource" in actions:
            assert stmt["Condition"] == {"StringEquals": {"aws:RequestTag/labbatch:lab": "genomics-core"}}
        elif stmt["Resource"] == "*":
            # Only the calls IAM cannot scope to a resource.
            assert sorted(actions) == ["batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions",
                                       "batch:DescribeJobQueues", "batch:DescribeJobs", "batch:ListJobs",
                                       "xray:PutTelemetryRecords", "xray:PutTraceSegments"]
        elif all(a.startswith("kms:") for a in actions):
            # genomics-core uses its own key (encryption: kms), named by the parameter its storage stack fills.
            [key] = as_list(stmt["Resource"])
            assert synthesized["genomics-core"].api_json["Parameters"][key["Ref"]]["Default"] == \
                "/labbatch/genomics-core/kms-key-arn"
        else:
            for arn in as_list(stmt["Resource"]):
                assert "genomics-core" in render(arn), stmt


def test_status_updater_can_recover_jobs_only_within_its_lab(synthesized):
    """It reads a failed job's record and manifest and resubmits it (lambda/labbatch_status/recovery.py)."""
    t = synthesized["genomics-core"].api_json
    grants = {}
    for stmt in statements_of(t, "StatusUpdater"):
        for action in as_list(stmt["Action"]):
            grants[action] = stmt
    assert sorted(as_list(grants["batch:SubmitJob"]["Resource"])) == CORE_SUBMIT_TARGETS
    assert grants["batch:TagResource"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/labbatch:lab": "genomics-core"}}
    assert not {"batch:CancelJob", "batch:TerminateJob", "dynamodb:DeleteItem", "s3:PutObject"} & set(grants)
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert render(grants[action]["Resource"]).endswith(":table/labbatch-genomics-core-jobs")
    # The runner's manifests, and array jobs' sample lists (to name a failed child's sample).
    reads = sorted(render(r) for stmt in statements_of(t, "StatusUpdater") if "s3:GetObject" in as_list(stmt["Action"])
                   for r in as_list(stmt["Resource"]))
    assert len(reads) == 2, reads
    manifest = next(r for r in reads if "labbatch-genomics-core-results" in r)
    assert manifest.endswith("/jobs/*/manifest.json")
    samples = next(r for r in reads if r is not manifest)
    assert "labbatch-genomics-core-inputs" in samples and samples.endswith("/work/samples/*")
    updater = next(v for k, v in resources(t, "AWS::Lambda::Function").items() if "StatusUpdater" in k)
    assert updater["Properties"]["Timeout"] == 30


def test_state_change_rule_listens_only_to_the_labs_queues(synthesized):
    _, rule = only(synthesized["example"].api_json, "AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.batch"] and pattern["detail-type"] == ["Batch Job State Change"]
    queues = sorted(render(q) for q in pattern["detail"]["jobQueue"])
    assert queues == ["arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job-queue/labbatch-example-on-demand",
                      "arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job-queue/labbatch-example-spot"]
    [target] = rule["Properties"]["Targets"]
    assert "StatusUpdater" in target["Arn"]["Fn::GetAtt"][0]


@pytest.mark.parametrize("lab", ["example", "genomics-core"])
def test_every_log_group_of_the_api_expires(synthesized, lab):
    groups = resources(synthesized[lab].api_json, "AWS::Logs::LogGroup")
    assert len(groups) == 3  # handler, updater, access logs
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {30 if lab == "example" else 90}
    for fn in resources(synthesized[lab].api_json, "AWS::Lambda::Function").values():
        assert "LoggingConfig" in fn["Properties"]


def test_ledger_table_is_retained_recoverable_and_keyed_for_the_handler(synthesized):
    table_id, table = only(synthesized["example"].storage_json, "AWS::DynamoDB::Table")
    assert table_id == "JobLedgerTable1F2B6B5A" or table_id.startswith("JobLedgerTable")
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert props["TableName"] == "labbatch-example-jobs"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True
    assert props["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_created"
    assert index["KeySchema"] == [{"AttributeName": "record_type", "KeyType": "HASH"},
                                  {"AttributeName": "created_at", "KeyType": "RANGE"}]


def test_status_updater_announces_failures_on_the_labs_topic_only(synthesized):
    t = synthesized["genomics-core"].api_json
    updater = next(v for k, v in resources(t, "AWS::Lambda::Function").items() if "StatusUpdater" in k)
    topic = "arn:aws:sns:eu-west-1:111122223333:labbatch-genomics-core-alerts"
    assert render(updater["Properties"]["Environment"]["Variables"]["LABBATCH_ALERT_TOPIC_ARN"]) == topic
    publishes = [s for s in statements_of(t, "StatusUpdater") if "sns:Publish" in as_list(s["Action"])]
    assert [render(s["Resource"]) for s in publishes] == [topic]


def test_both_functions_are_deployed_with_the_contract_package_and_import_from_it_alone(synthesized):
    """What Lambda gets: the function's folder and labbatch_contract, nothing else of the repo.
    Each handler module imports in a fresh interpreter whose only project path is the asset."""
    import subprocess
    import sys
    from pathlib import Path

    functions = {logical_id: f for logical_id, f in resources(synthesized["example"].api_json,
                                                                "AWS::Lambda::Function").items()
                 if f["Properties"].get("Handler") in ("labbatch_api.handler.lambda_handler",
                                                            "labbatch_status.handler.lambda_handler")}
    assert len(functions) == 2
    for function in functions.values():
        # The code's S3 key is the asset's hash; the assembly stages the asset as asset.<hash>.
        key = function["Properties"]["Code"]["S3Key"]
        asset = Path(synthesized["example"].outdir) / f"asset.{key.removesuffix('.zip')}"
        assert (asset / "labbatch_contract" / "ledger.py").is_file()
        assert (asset / "labbatch_contract" / "settings.py").is_file()
        assert not list(asset.rglob("__pycache__"))
        module = function["Properties"]["Handler"].rsplit(".", 1)[0]
        # -S keeps the project's editable install out; site-packages are added back by hand,
        # so the contract can only come from the asset.
        site = [p for p in sys.path if p.endswith("site-packages")]
        probe = (f"import sys; sys.path[:0] = [{str(asset)!r}]; sys.path += {site!r}; "
                 f"import {module}, labbatch_contract; "
                 f"assert labbatch_contract.__file__.startswith({str(asset)!r}), labbatch_contract.__file__")
        result = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1",
                                     "POWERTOOLS_TRACE_DISABLED": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
