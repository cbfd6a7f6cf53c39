"""The job role can do what the runner does on every lab, checked with local mode's evaluator
against the synthesized policy (found by strict IAM: stage-out lists its own prefix)."""

from __future__ import annotations

from labbatch.local.iam import templates as tpl
from labbatch.local.iam.evaluate import Principal, Request, evaluate

ACCOUNT, REGION = "123456789012", "us-east-1"


def job_role(lab) -> Principal:
    place = tpl.Place(account=ACCOUNT, region=REGION)
    stacks = lab.templates()
    arn = tpl.principal_roles({f"LabBatch-x-{k}": v for k, v in stacks.items()}, place)["job-role"]
    role = tpl.roles({f"LabBatch-x-{k}": v for k, v in stacks.items()}, place)[arn]
    return Principal(name="job-role", arn=arn, account=ACCOUNT, tags=role.tags, policies=role.policies)


def test_the_runner_may_list_its_own_output_prefix_to_verify_stage_out(synthesized):
    results = f"arn:aws:s3:::labbatch-example-results-{ACCOUNT}-{REGION}"
    principal = job_role(synthesized["example"])
    listing = Request("s3:ListBucket", results, {"s3:prefix": "jobs/j-01abc/", "aws:SecureTransport": "true"})
    assert evaluate(principal, listing).allowed


def test_the_job_role_may_not_list_other_prefixes_of_the_results_bucket(synthesized):
    results = f"arn:aws:s3:::labbatch-example-results-{ACCOUNT}-{REGION}"
    principal = job_role(synthesized["example"])
    for context in ({"s3:prefix": "tes/"}, {}):
        assert not evaluate(principal, Request("s3:ListBucket", results, context)).allowed
