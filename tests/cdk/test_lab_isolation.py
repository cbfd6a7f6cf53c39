"""Two labs synthesize to fully separate resources, and a lab's job role reaches only its own data."""

from __future__ import annotations

import re

import pytest

from tests.cdk.conftest import resources

NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::Batch::JobQueue": "JobQueueName",
    "AWS::Batch::JobDefinition": "JobDefinitionName",
    "AWS::Logs::LogGroup": "LogGroupName",
}


def render(value) -> str:
    """A CloudFormation value as text, with pseudo parameters and references left as ${...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(render(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    return repr(value)


def named_resources(lab) -> set[str]:
    names = set()
    for template in (lab.storage_json, lab.compute_json):
        for cfn_type, prop in NAME_PROPERTIES.items():
            names |= {render(r["Properties"][prop]) for r in resources(template, cfn_type).values()
                      if prop in r["Properties"]}
    return names


def policy_statements(template: dict, role_fragment: str) -> list[dict]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"]]
        if any(role_fragment in r for r in roles):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_two_labs_share_no_named_resource(synthesized):
    a, b = named_resources(synthesized["example"]), named_resources(synthesized["genomics-core"])
    # 4 buckets, 2 queues per pool, a job definition per pipeline, and the jobs' and flow logs' groups
    # (genomics-core, a KMS lab with three pools, also names the group of CDK's default-security-group cleaner)
    assert (len(a), len(b)) == (4 + 2 + 2 + 2, 4 + 3 * 2 + 5 + 2 + 1)
    assert a.isdisjoint(b)
    assert all("example" in n for n in a) and all("genomics-core" in n for n in b)


def test_two_labs_have_their_own_roles_and_queues(synthesized):
    for kind in ("AWS::IAM::Role", "AWS::Batch::JobQueue", "AWS::Batch::ComputeEnvironment", "AWS::Logs::LogGroup"):
        assert resources(synthesized["example"].compute_json, kind)
        assert resources(synthesized["genomics-core"].compute_json, kind)
    # Nothing in one lab's compute stack points at the other lab.
    import json
    assert "genomics-core" not in json.dumps(synthesized["example"].compute_json)
    assert "labbatch-example" not in json.dumps(synthesized["genomics-core"].compute_json)


@pytest.mark.parametrize("lab", ["example", "genomics-core"])
def test_job_role_reads_inputs_and_references_and_writes_only_results(synthesized, lab):
    statements = policy_statements(synthesized[lab].compute_json, "JobRole")
    assert statements
    reads, writes = set(), set()
    for s in statements:
        assert s["Effect"] == "Allow"
        targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        if all(a.startswith("kms:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])):
            # A KMS lab's job role uses its own lab's key, and no other.
            assert [synthesized[lab].compute_json["Parameters"][t["Ref"]]["Default"] for t in targets] == \
                [f"/labbatch/{lab}/kms-key-arn"]
            continue
        rendered = [render(r) for r in targets]
        for arn in rendered:
            bucket = re.search(r":s3:::([^/]+?)(/|$)", arn).group(1)
            assert bucket.startswith(f"labbatch-{lab}-"), arn
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not any(a == "*" or a == "s3:*" for a in actions)
        if actions == ["s3:ListBucket"] and all(f"labbatch-{lab}-results-" in arn for arn in rendered):
            # Stage-out verifies its uploads with one listing of its own prefix, Nextflow's tasks list
            # their work folder, and nothing else is listed.
            assert s["Condition"] == {"StringLike": {"s3:prefix": ["jobs/*", "nextflow/*"]}}
            continue
        if any(a.startswith("s3:Put") for a in actions):
            writes |= set(rendered)
        else:
            reads |= set(rendered)
    # jobs/ for LabBatch's jobs, nextflow/ for Nextflow's work directories (and tes/ on a TES lab).
    assert all(f"labbatch-{lab}-results-" in w and w.endswith(("/jobs/*", "/nextflow/*")) for w in writes)
    kinds = {re.search(rf"labbatch-{lab}-(\w+)-", r).group(1) for r in reads}
    assert kinds == {"inputs", "references", "results"}
    # Of results, a job reads only Nextflow's work prefix (its tasks stage from it) and lists the bucket.
    assert all("/" not in r.split(":::", 1)[1] or r.endswith("/nextflow/*") for r in reads if "-results-" in r)
