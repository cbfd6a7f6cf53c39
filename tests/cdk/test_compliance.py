"""cdk-nag (AwsSolutions and HIPAA Security) and cfn-lint over every lab's synthesized templates."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks
from cfnlint.api import ManualArgs, lint

from labbatch.lab.loader import load_labs, parse_lab
from stacks.lab import build_lab
from tests.cdk.conftest import kms_data, pools_data, tes_data, variant_data
from tests.conftest import LABS_DIR

NAG_PACKS = {"AwsSolutions", "HIPAA.Security"}
# Phrases that say nothing about why; a reviewer would send them back.
EMPTY_REASONS = ("not needed", "not required", "n/a", "todo", "ignore")


@pytest.fixture(scope="session")
def nag_report(cdk_context, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("nag")
    app = cdk.App(context=cdk_context, outdir=str(out))
    for lab in load_labs(LABS_DIR) + [parse_lab(variant_data(), "variant.yaml"), parse_lab(kms_data(), "vault.yaml"),
                                         parse_lab(tes_data(), "flow.yaml"), parse_lab(pools_data(), "pools.yaml")]:
        build_lab(app, lab)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
    try:
        app.synth()
    except RuntimeError as exc:  # an unacknowledged error finding fails synth; the report says which
        assert "ValidationFailed" in str(exc)
    return json.loads((out / "validation-report.json").read_text())


def nag_plugins(report: dict) -> list[dict]:
    plugins = [p for p in report["pluginReports"] if p["pluginName"] in NAG_PACKS]
    assert {p["pluginName"] for p in plugins} == NAG_PACKS
    return plugins


def test_no_unacknowledged_cdk_nag_finding(nag_report):
    open_findings = [
        f"{p['pluginName']}: {v['ruleName']} at {c['constructPath']}"
        for p in nag_plugins(nag_report) for v in p["violations"] for c in v["violatingConstructs"]
    ]
    assert open_findings == []


def test_every_acknowledgment_gives_a_real_reason_at_a_narrow_scope(nag_report):
    acknowledged = [v for p in nag_plugins(nag_report) for v in p["suppressedViolations"]]
    assert len(acknowledged) > 20  # the suppressions exist, so this test has something to check
    for finding in acknowledged:
        reason = finding.get("reason", "")
        assert len(reason) >= 40 and not any(w in reason.lower() for w in EMPTY_REASONS), finding["ruleName"]
        # Acknowledged on the construct that has the finding (or its parent), never a whole stack.
        assert finding["acknowledgedAt"].count("/") >= 1, (finding["ruleName"], finding["acknowledgedAt"])
        for construct in finding["violatingConstructs"]:
            assert construct["constructPath"].startswith(finding["acknowledgedAt"] + "/") or \
                construct["constructPath"] == finding["acknowledgedAt"]


def test_app_py_applies_both_rule_packs():
    from tests.conftest import ROOT
    source = (ROOT / "app.py").read_text()
    assert "add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))" in source


def all_templates(synthesized) -> dict[str, dict]:
    return {f"{lab}-{part}": getattr(s, f"{part}_json")
            for lab, s in synthesized.items() for part in ("storage", "compute", "api")}


def test_cfn_lint_finds_no_errors_in_any_template(synthesized):
    problems = []
    for name, template in all_templates(synthesized).items():
        matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
        problems += [f"{name}: {m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.severity == "error"]
    assert problems == []


# Acknowledgements whose only reason is that the lab has no customer-managed key.
NO_KEY_ONLY = ("HIPAA.Security-S3DefaultEncryptionKMS", "HIPAA.Security-CloudWatchLogGroupEncrypted",
               "AwsSolutions-SNS2", "HIPAA.Security-SNSEncryptedKMS")


def test_a_kms_lab_keeps_none_of_the_no_customer_key_acknowledgements(nag_report):
    acknowledged = [(v["ruleName"], c["constructPath"]) for p in nag_plugins(nag_report)
                    for v in p["suppressedViolations"] for c in v["violatingConstructs"]]
    for lab in ("vault", "genomics-core"):
        assert [a for a in acknowledged if a[0] in NO_KEY_ONLY and a[1].startswith(f"LabBatch-{lab}-")] == []
    # The default lab still has them, with their reasons: the test looks where they would be.
    assert {rule for rule, path in acknowledged if path.startswith("LabBatch-example-")} >= {
        "HIPAA.Security-S3DefaultEncryptionKMS", "HIPAA.Security-CloudWatchLogGroupEncrypted",
        "HIPAA.Security-SNSEncryptedKMS"}
