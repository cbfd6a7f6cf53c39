"""Cost and operations: idle cost near zero, every dollar attributed, logs bounded, alerts delivered."""

from __future__ import annotations

import json
import os

import pytest

from labbatch.client import cost
from labbatch.client.cli import main
from labbatch.lab.loader import load_labs
from tests.cdk.conftest import only, resources
from tests.cdk.test_lab_isolation import render
from tests.conftest import LABS_DIR

# Resource types that bill only by use (requests, bytes, instance hours) or not at all. A new
# type in a lab must be placed here or in labbatch/lab/data/prices.json, so idle cost stays known.
PAY_PER_USE = {
    "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::DynamoDB::Table", "AWS::EC2::VPC", "AWS::EC2::Subnet",
    "AWS::EC2::RouteTable", "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::Route",
    "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::SecurityGroup",
    "AWS::EC2::LaunchTemplate", "AWS::EC2::FlowLog", "AWS::SQS::QueuePolicy", "AWS::IAM::Role", "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",  # IAM is free (the lab's Nextflow policy)
    "AWS::IAM::InstanceProfile", "AWS::Batch::ComputeEnvironment", "AWS::Batch::JobQueue",
    "AWS::Batch::JobDefinition", "AWS::Logs::LogGroup", "AWS::Lambda::Function", "AWS::Lambda::Permission",
    "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Resource", "AWS::ApiGateway::Method", "AWS::ApiGateway::Authorizer",
    "AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage", "AWS::Events::Rule", "AWS::SQS::Queue",
    "AWS::SNS::Topic", "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription", "AWS::CDK::Metadata",
    "Custom::VpcRestrictDefaultSG", "AWS::EC2::VPCEndpoint:Gateway",
    "AWS::KMS::Alias", "AWS::SSM::Parameter",  # aliases are free; a standard parameter is free
}


def all_resources(lab) -> list[dict]:
    return [r for t in lab.templates().values() for r in t["Resources"].values()]


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_every_resource_type_is_priced_or_pay_per_use(synthesized, lab):
    fixed = set(cost.load_prices()["regions"]["us-east-1"]["fixed_monthly"])
    unknown = {cost.priced_type(r) for r in all_resources(synthesized[lab])} - PAY_PER_USE - fixed
    assert unknown == set()


def test_default_lab_has_no_fixed_cost_but_its_budget(synthesized):
    region = cost.region_prices(cost.load_prices(), "us-east-1")
    items = cost.fixed_costs(synthesized["example"].templates(), region)
    assert [(i.resource, i.count) for i in items] == [("AWS::Budgets::Budget", 1)]
    assert sum(i.monthly_usd for i in items) < 1.0


def test_options_with_a_fixed_cost_show_up_in_the_cost(synthesized):
    region = cost.region_prices(cost.load_prices(), "eu-west-1")
    items = {i.resource: i for i in cost.fixed_costs(synthesized["genomics-core"].templates(), region)}
    assert items["AWS::EC2::NatGateway"].count == 3 and items["AWS::EC2::EIP"].count == 3
    assert items["AWS::CloudWatch::Dashboard"].count == 1
    assert items["AWS::EC2::NatGateway"].monthly_usd == pytest.approx(3 * 35.04)


def test_labbatch_cost_prints_the_breakdown_from_the_templates(synthesized, tmp_path, capsys):
    for part, template in synthesized["genomics-core"].templates().items():
        (tmp_path / f"LabBatch-genomics-core-{part}.template.json").write_text(json.dumps(template))
    assert main(["cost", "--lab", "genomics-core", "--cdk-out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["region"] == "eu-west-1" and report["prices_as_of"] == cost.load_prices()["as_of"]
    assert report["fixed_monthly_total_usd"] == pytest.approx(sum(i["monthly_usd"] for i in report["fixed_monthly"]))
    pools = {pool["pool"]: pool for pool in report["per_job"]["pools"]}
    assert list(pools) == ["default", "memory", "gpu"]
    by_type = {row["instance_type"]: row for row in pools["default"]["instances"]}
    assert by_type["r6i.xlarge"]["on_demand_hour"] == pytest.approx(4 * 0.0705)
    assert by_type["r6i.xlarge"]["spot_hour_typical"] < by_type["r6i.xlarge"]["on_demand_hour"]
    scratch = pools["default"]["scratch_volume"]  # 1000 GiB, 16,000 IOPS, 1,000 MiB/s in eu-west-1
    assert scratch["per_instance_month"] == pytest.approx(1000 * 0.088 + 13000 * 0.0055 + 875 * 0.044)
    # The GPU pool is priced per instance, with its GPU hours (g5.xlarge: one A10G).
    g5 = next(row for row in pools["gpu"]["instances"] if row["instance_type"] == "g5.xlarge")
    assert (g5["gpus"], g5["gpu_memory_gib"]) == (1, 24)
    assert g5["gpu_hour_on_demand"] == g5["on_demand_hour"] == cost.load_prices()["regions"]["eu-west-1"][
        "on_demand_gpu_instance_hour"]["g5.xlarge"]
    assert pools["gpu"]["gpu"] and pools["memory"]["scratch_volume"]["size_gib"] == 2000


def test_the_compliance_tier_is_priced_and_the_default_lab_still_idles_at_its_budget(synthesized, tmp_path, capsys):
    region = cost.region_prices(cost.load_prices(), "eu-west-1")
    items = {i.resource: i for i in cost.fixed_costs(synthesized["genomics-core"].templates(), region)}
    assert items["AWS::KMS::Key"].count == 1 and items["AWS::KMS::Key"].monthly_usd == pytest.approx(1.00)
    # The trail has no monthly fee, but it is listed, with what it costs per event.
    assert items["AWS::CloudTrail::Trail"].count == 1 and items["AWS::CloudTrail::Trail"].monthly_usd == 0
    assert "per 100,000 data events" in items["AWS::CloudTrail::Trail"].unit
    for part, template in synthesized["genomics-core"].templates().items():
        (tmp_path / f"LabBatch-genomics-core-{part}.template.json").write_text(json.dumps(template))
    assert main(["cost", "--lab", "genomics-core", "--cdk-out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AWS::KMS::Key" in out and "AWS::CloudTrail::Trail" in out
    assert "per 10,000 KMS requests" in out and "per 100,000 data events" in out
    example = cost.fixed_costs(synthesized["example"].templates(), cost.region_prices(cost.load_prices(), "us-east-1"))
    assert [i.resource for i in example] == ["AWS::Budgets::Budget"]


def test_labbatch_cost_without_templates_says_how_to_make_them(tmp_path, capsys):
    assert main(["cost", "--lab", "example", "--cdk-out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("labbatch: cost: ") and "synthesize first" in err and err.count("\n") == 0


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_every_log_group_expires_with_the_labs_retention(synthesized, lab):
    days = load_labs(LABS_DIR, only=lab)[0].log_retention_days if lab != "variant" else 30
    groups = [r for r in all_resources(synthesized[lab]) if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(groups) >= 4  # jobs, handler, updater, API access (+ flow logs where LabBatch owns the VPC)
    assert {g["Properties"].get("RetentionInDays") for g in groups} == {days}


@pytest.mark.parametrize("lab", ["example", "genomics-core"])
def test_every_function_logs_to_a_group_that_expires(synthesized, lab):
    for part in ("compute_json", "api_json"):
        template = getattr(synthesized[lab], part)
        for logical_id, fn in resources(template, "AWS::Lambda::Function").items():
            target = fn["Properties"].get("LoggingConfig", {}).get("LogGroup")
            assert target, f"{logical_id} would log to an auto-created group that never expires"
            group_id = target["Ref"]
            assert template["Resources"][group_id]["Properties"]["RetentionInDays"] > 0


def test_budget_follows_the_labs_cost_tag_and_alerts_its_topic(synthesized):
    t = synthesized["genomics-core"].operations_json
    _, budget = only(t, "AWS::Budgets::Budget")
    data = budget["Properties"]["Budget"]
    assert data["BudgetLimit"] == {"Amount": 5000, "Unit": "USD"} and data["TimeUnit"] == "MONTHLY"
    assert data["CostFilters"] == {"TagKeyValue": ["user:labbatch:lab$genomics-core"]}
    topic_id, _ = only(t, "AWS::SNS::Topic")
    alerts = [(n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
              for n in budget["Properties"]["NotificationsWithSubscribers"]]
    assert alerts == [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    for n in budget["Properties"]["NotificationsWithSubscribers"]:
        assert n["Subscribers"] == [{"Address": {"Ref": topic_id}, "SubscriptionType": "SNS"}]


def test_alert_topic_delivers_to_the_configured_addresses_over_tls_only(synthesized):
    t = synthesized["genomics-core"].operations_json
    _, sub = only(t, "AWS::SNS::Subscription")
    assert sub["Properties"]["Protocol"] == "email" and sub["Properties"]["Endpoint"] == "core-admins@example.org"
    _, policy = only(t, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    budgets = [s for s in statements if s.get("Principal") == {"Service": "budgets.amazonaws.com"}]
    assert budgets and budgets[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": "111122223333"}}
    assert resources(synthesized["example"].operations_json, "AWS::SNS::Subscription") == {}


def test_dashboard_is_opt_in(synthesized):
    assert resources(synthesized["example"].operations_json, "AWS::CloudWatch::Dashboard") == {}
    _, dashboard = only(synthesized["genomics-core"].operations_json, "AWS::CloudWatch::Dashboard")
    body = render(dashboard["Properties"]["DashboardBody"])
    for needle in ("AWS/ApiGateway", "5XXError", "Latency", "labbatch-genomics-core-api",
                   "labbatch-genomics-core-status", "/labbatch/genomics-core/status", "Job outcomes"):
        assert needle in body, needle


@pytest.mark.parametrize("lab", ["example", "genomics-core"])
def test_every_stack_is_tagged_for_cost_allocation(synthesized, lab):
    tagged = 0
    for r in all_resources(synthesized[lab]):
        tags = r.get("Properties", {}).get("Tags")
        if isinstance(tags, list):
            tags = {t["Key"]: t["Value"] for t in tags}
        if isinstance(tags, dict):
            assert tags.get("labbatch:lab") == lab, r["Type"]
            tagged += 1
    assert tagged >= 20


def _stale_copy(synthesized, tmp_path, edit) -> tuple:
    """The example lab's templates as synthesized, then its lab file edited after them."""
    import yaml

    out, labs = tmp_path / "cdk.out", tmp_path / "labs"
    out.mkdir()
    labs.mkdir()
    for part, template in synthesized["example"].templates().items():
        path = out / f"LabBatch-example-{part}.template.json"
        path.write_text(json.dumps(template))
        os.utime(path, (1_700_000_000, 1_700_000_000))
    data = yaml.safe_load((LABS_DIR / "example.yaml").read_text())
    edit(data)
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return out, labs


def _nat_and_dashboard(data: dict) -> None:
    data["network"] = {"mode": "private-nat", "max_azs": 2}
    data["dashboard"] = True


def test_labbatch_cost_refuses_templates_older_than_the_lab_file_with_no_synth(synthesized, tmp_path, capsys):
    out, labs = _stale_copy(synthesized, tmp_path, _nat_and_dashboard)
    assert main(["cost", "--lab", "example", "--cdk-out", str(out), "--labs-dir", str(labs), "--no-synth"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("labbatch: cost: stale templates: ") and err.count("\n") == 0
    assert str(labs / "example.yaml") in err and "make synth" in err


def test_labbatch_cost_prices_what_the_lab_file_says_now_not_a_stale_assembly(synthesized, tmp_path, capsys):
    # The case: NAT gateways and a dashboard added after the last synth.
    out, labs = _stale_copy(synthesized, tmp_path, _nat_and_dashboard)
    before = {p.name: p.read_text() for p in out.iterdir()}
    assert main(["cost", "--lab", "example", "--cdk-out", str(out), "--labs-dir", str(labs), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    items = {i["resource"]: i for i in result["fixed_monthly"]}
    assert items["AWS::EC2::NatGateway"]["count"] == 2 and items["AWS::CloudWatch::Dashboard"]["count"] == 1
    assert result["fixed_monthly_total_usd"] > 60
    assert "pricing a fresh synth of the lab file" in captured.err
    # The stale assembly is left as it was; a fresh one is priced as it is.
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    # Fresh templates are priced as they are, however little they say.
    for path in out.iterdir():
        os.utime(path, None)
    assert main(["cost", "--lab", "example", "--cdk-out", str(out), "--labs-dir", str(labs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fixed_monthly_total_usd"] < 1.0
