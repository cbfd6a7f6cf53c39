"""The lab's Nextflow policy (lab_constructs/nextflow_access.py): its exact statements, and what it
allows and refuses, evaluated on the synthesized statements with the account and Region filled
in: this lab's queues, job role and work prefix yes; a second lab's (genomics-core, synthesized in
the same app) no."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from tests.cdk.conftest import resources

ACCOUNT, REGION = "123456789012", "eu-west-1"


def resolve(value, template: dict) -> str:
    """A CloudFormation value as the ARN it becomes in ACCOUNT/REGION."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(resolve(p, template) for p in parts)
    if "Ref" in value:
        return {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}[value["Ref"]]
    if "Fn::GetAtt" in value:
        logical, attribute = value["Fn::GetAtt"]
        props = template["Resources"][logical]["Properties"]
        if attribute == "JobQueueArn":
            return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{props['JobQueueName']}"
        if attribute == "Arn" and "RoleName" in props:
            return f"arn:aws:iam::{ACCOUNT}:role/{props['RoleName']}"
    raise AssertionError(f"cannot resolve {value}")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def nextflow_policy(compute: dict) -> tuple[str, dict]:
    (found,) = [(k, v) for k, v in resources(compute, "AWS::IAM::ManagedPolicy").items()
                if k.startswith("NextflowAccess")]
    return found


def statements(compute: dict) -> list[dict]:
    """Each statement with its resources resolved."""
    _, policy = nextflow_policy(compute)
    return [{**s, "Action": as_list(s["Action"]), "Resource": [resolve(r, compute) for r in as_list(s["Resource"])]}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]]


def allowed(policy: list[dict], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """IAM's evaluation for one identity policy of Allow statements (no Deny is written)."""
    context = context or {}
    for statement in policy:
        assert statement["Effect"] == "Allow"
        if not any(fnmatchcase(action, a) for a in statement["Action"]):
            continue
        if not any(fnmatchcase(resource, r) for r in statement["Resource"]):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals", "StringLike"}, conditions
        like = {key: value if isinstance(value, list) else [value]
                for key, value in conditions.get("StringLike", {}).items()}
        if all(context.get(key) == value for key, value in conditions.get("StringEquals", {}).items()) and \
                all(key in context and any(fnmatchcase(context[key], p) for p in patterns)
                    for key, patterns in like.items()):
            return True
    return False


@pytest.fixture(scope="module")
def labs(synthesized):
    example, other = synthesized["example"].compute_json, synthesized["genomics-core"].compute_json
    return statements(example), example, other


def arn_of_queue(compute: dict, kind: str) -> str:
    (queue,) = [q for q in resources(compute, "AWS::Batch::JobQueue").values()
                if q["Properties"]["JobQueueName"].endswith(kind)]
    return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{queue['Properties']['JobQueueName']}"


def test_the_policy_is_named_for_the_lab_and_holds_exactly_these_statements(labs):
    policy, example, _ = labs
    _, resource = nextflow_policy(example)
    assert resource["Properties"]["ManagedPolicyName"] == "labbatch-example-nextflow"
    by_sid = {s["Sid"]: (sorted(s["Action"]), sorted(s["Resource"]), s.get("Condition")) for s in policy}
    batch = f"arn:aws:batch:{REGION}:{ACCOUNT}"
    results = f"arn:aws:s3:::labbatch-example-results-{ACCOUNT}-{REGION}"
    tag = {"StringEquals": {"aws:RequestTag/labbatch:lab": "example"}}
    assert by_sid == {
        "RegisterNextflowJobDefinitions": (["batch:RegisterJobDefinition", "batch:TagResource"],
                                           [f"{batch}:job-definition/nf-*"], None),
        "SubmitTaggedToLabQueues": (["batch:SubmitJob", "batch:TagResource"], sorted([
            arn_of_queue(example, "-spot"), arn_of_queue(example, "-on-demand"), f"{batch}:job-definition/nf-*",
            f"{batch}:job/*"]), tag),
        "StopLabJobs": (["batch:CancelJob", "batch:TerminateJob"], [f"{batch}:job/*"],
                        {"StringEquals": {"aws:ResourceTag/labbatch:lab": "example"}}),
        "DescribeBatch": (["batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions",
                           "batch:DescribeJobQueues", "batch:DescribeJobs"], ["*"], None),
        "PassLabJobRole": (["iam:PassRole"], [f"arn:aws:iam::{ACCOUNT}:role/labbatch-example-job"],
                           {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        "WorkDirectory": (["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                          [f"{results}/nextflow/*"], None),
        "ListLabBuckets": (["s3:ListBucket"], sorted(f"arn:aws:s3:::labbatch-example-{k}-{ACCOUNT}-{REGION}"
                                                     for k in ("inputs", "references", "results")), None),
        "ReadInputs": (["s3:GetObject"], sorted(f"arn:aws:s3:::labbatch-example-{k}-{ACCOUNT}-{REGION}/*"
                                                for k in ("inputs", "references")), None),
        "ReadTaskLogs": (["logs:GetLogEvents"],
                         [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/labbatch/example/jobs:log-stream:*"], None),
    }


def test_what_a_nextflow_head_does_on_its_own_lab_is_allowed(labs):
    policy, example, _ = labs
    batch = f"arn:aws:batch:{REGION}:{ACCOUNT}"
    tagged = {"aws:RequestTag/labbatch:lab": "example"}
    assert allowed(policy, "batch:RegisterJobDefinition", f"{batch}:job-definition/nf-quay-io-biocontainers-bwa-0-7-17")
    for queue in (arn_of_queue(example, "-spot"), arn_of_queue(example, "-on-demand")):
        assert allowed(policy, "batch:SubmitJob", queue, tagged)
    assert allowed(policy, "batch:SubmitJob", f"{batch}:job-definition/nf-ubuntu-22-04:3", tagged)
    assert allowed(policy, "batch:TerminateJob", f"{batch}:job/abc", {"aws:ResourceTag/labbatch:lab": "example"})
    assert allowed(policy, "batch:DescribeJobs", "*")
    assert allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/labbatch-example-job",
                   {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    results = f"arn:aws:s3:::labbatch-example-results-{ACCOUNT}-{REGION}"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(policy, action, f"{results}/nextflow/work/ab/cdef/.command.run")


def test_a_second_labs_queues_role_and_bucket_are_refused(labs):
    policy, example, other = labs
    batch = f"arn:aws:batch:{REGION}:{ACCOUNT}"
    tagged = {"aws:RequestTag/labbatch:lab": "example"}
    # Every queue of every pool of the second lab.
    for queue in resources(other, "AWS::Batch::JobQueue").values():
        arn = f"{batch}:job-queue/{queue['Properties']['JobQueueName']}"
        assert not allowed(policy, "batch:SubmitJob", arn, tagged)
    assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/labbatch-genomics-core-job",
                       {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    other_results = f"arn:aws:s3:::labbatch-genomics-core-results-{ACCOUNT}-{REGION}"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"):
        assert not allowed(policy, action, f"{other_results}/nextflow/work/x")
    assert not allowed(policy, "s3:ListBucket", other_results)
    # The second lab's jobs carry its own tag: not stoppable from here.
    assert not allowed(policy, "batch:TerminateJob", f"{batch}:job/abc",
                       {"aws:ResourceTag/labbatch:lab": "genomics-core"})
    # Nor the lab's own queues for a job without its tag, nor its own definitions, nor outside nextflow/.
    assert not allowed(policy, "batch:SubmitJob", arn_of_queue(example, "-spot"), {})
    assert not allowed(policy, "batch:RegisterJobDefinition", f"{batch}:job-definition/labbatch-example-align")
    assert not allowed(policy, "s3:PutObject", f"arn:aws:s3:::labbatch-example-results-{ACCOUNT}-{REGION}/jobs/x")
    assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/labbatch-example-job", {})


def test_the_job_role_reads_and_writes_the_nextflow_work_prefix(synthesized):
    compute = synthesized["example"].compute_json
    (role_policy,) = [p for p in resources(compute, "AWS::IAM::Policy").values()
                      if any("JobRole" in r["Ref"] for r in p["Properties"]["Roles"])]
    granted = [{**s, "Action": as_list(s["Action"]), "Resource": [resolve(r, compute) for r in as_list(s["Resource"])]}
               for s in role_policy["Properties"]["PolicyDocument"]["Statement"]]
    results = f"arn:aws:s3:::labbatch-example-results-{ACCOUNT}-{REGION}"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert allowed(granted, action, f"{results}/nextflow/work/ab/x/.exitcode"), action
    # `aws s3 ls` in nxf_s3_download lists the work folder; the bucket's other prefixes stay unlisted.
    assert allowed(granted, "s3:ListBucket", results, {"s3:prefix": "nextflow/work/ab/x/"})
    assert not allowed(granted, "s3:ListBucket", results, {"s3:prefix": "tes/"})
    assert not allowed(granted, "s3:DeleteObject", f"{results}/jobs/j-1/out.txt")
    roles = {r["Properties"].get("RoleName") for r in resources(compute, "AWS::IAM::Role").values()}
    assert "labbatch-example-job" in roles  # what engine-config prints as aws.batch.jobRole


def test_the_assumable_role_exists_only_for_a_lab_that_names_its_principals(synthesized):
    def nextflow_roles(lab):
        return [r for k, r in resources(synthesized[lab].compute_json, "AWS::IAM::Role").items()
                if k.startswith("NextflowAccess")]

    assert nextflow_roles("example") == []  # no api.principals
    (role,) = nextflow_roles("genomics-core")
    assert role["Properties"]["RoleName"] == "labbatch-genomics-core-nextflow"
    principals = [s["Principal"]["AWS"] for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]]
    assert principals and all("arn:aws:iam::" in str(p) for p in principals)
