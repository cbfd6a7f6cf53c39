"""Local mode's policy evaluation against AWS's documented logic ("Policy evaluation logic" in the
IAM User Guide; "Key policies" in the KMS Developer Guide)."""

from __future__ import annotations

import pytest

from labbatch.local.iam.evaluate import Principal, Request, Unsupported, condition_holds, evaluate
from labbatch.local.iam.templates import Policy

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lab-job"
BUCKET = "arn:aws:s3:::lab-inputs"


def principal(*statements: dict, tags: dict | None = None) -> Principal:
    return Principal(name="job-role", arn=ROLE, account=ACCOUNT, tags=tags or {},
                     policies=(Policy("identity", {"Statement": list(statements)}),))


def allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_nothing_is_allowed_without_a_statement_that_allows_it():
    decision = evaluate(principal(), Request("s3:GetObject", f"{BUCKET}/a"))
    assert not decision.allowed and "no identity-based or resource-based policy" in decision.reason


def test_an_identity_allow_names_the_statement_that_allowed():
    decision = evaluate(principal(allow("s3:GetObject", f"{BUCKET}/*", Sid="Read")), Request("s3:GetObject", f"{BUCKET}/a"))
    assert decision.allowed and decision.allowed_by == ("identity#0 (Read)",)


def test_an_explicit_deny_in_a_resource_policy_beats_an_identity_allow():
    bucket_policy = Policy("BucketPolicy", {"Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                                                           "Resource": f"{BUCKET}/*"}]})
    decision = evaluate(principal(allow("s3:*", "*")), Request("s3:GetObject", f"{BUCKET}/a"), [bucket_policy])
    assert not decision.allowed and decision.denied_by == ("BucketPolicy#0",)


def test_a_deny_conditioned_on_plain_http_does_not_apply_to_tls_requests():
    deny = Policy("BucketPolicy", {"Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                                                  "Resource": f"{BUCKET}/*",
                                                  "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
    who = principal(allow("s3:GetObject", f"{BUCKET}/*"))
    assert evaluate(who, Request("s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": "true"}), [deny]).allowed
    assert not evaluate(who, Request("s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": "false"}), [deny]).allowed


def test_a_resource_policy_naming_the_principal_allows_without_an_identity_policy():
    named = Policy("BucketPolicy", {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject",
                                                   "Resource": f"{BUCKET}/*"}]})
    assert evaluate(principal(), Request("s3:GetObject", f"{BUCKET}/a"), [named]).allowed


def test_a_resource_policy_naming_the_account_only_delegates_to_iam():
    account = Policy("ApiPolicy", {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                  "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*"}]})
    assert not evaluate(principal(), Request("execute-api:Invoke", "arn:aws:execute-api:r:a:api/GET/x"), [account]).allowed


def test_a_key_policy_must_allow_even_when_the_identity_policy_does():
    key = "arn:aws:kms:us-east-1:123456789012:key/k"
    who = principal(allow("kms:Decrypt", key))
    silent = Policy("KeyPolicy", {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                                                 "Action": "kms:*", "Resource": "*"}]})
    assert not evaluate(who, Request("kms:Decrypt", key), [silent], key_policy=True).allowed
    delegating = Policy("KeyPolicy", {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                     "Action": "kms:Decrypt", "Resource": "*"}]})
    assert evaluate(who, Request("kms:Decrypt", key), [delegating], key_policy=True).allowed
    decision = evaluate(principal(), Request("kms:Decrypt", key), [delegating], key_policy=True)
    assert not decision.allowed and "only through IAM" in decision.reason


def test_key_policy_conditions_on_principal_tags_and_via_service():
    key = "arn:aws:kms:us-east-1:123456789012:key/k"
    policy = Policy("KeyPolicy", {"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:GenerateDataKey",
        "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalTag/labbatch:lab": "vault",
                                                        "kms:ViaService": "s3.us-east-1.amazonaws.com"}}}]})
    via_s3 = Request("kms:GenerateDataKey", key, {"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    ours = principal(allow("kms:GenerateDataKey", key), tags={"labbatch:lab": "vault"})
    theirs = principal(allow("kms:GenerateDataKey", key), tags={"labbatch:lab": "other"})
    assert evaluate(ours, via_s3, [policy], key_policy=True).allowed
    assert not evaluate(theirs, via_s3, [policy], key_policy=True).allowed
    assert not evaluate(ours, Request("kms:GenerateDataKey", key), [policy], key_policy=True).allowed


def test_not_action_and_not_resource_match_everything_but_what_they_list():
    who = principal({"Effect": "Allow", "NotAction": "s3:DeleteObject", "NotResource": f"{BUCKET}/secret/*"})
    assert evaluate(who, Request("s3:GetObject", f"{BUCKET}/a")).allowed
    assert not evaluate(who, Request("s3:DeleteObject", f"{BUCKET}/a")).allowed
    assert not evaluate(who, Request("s3:GetObject", f"{BUCKET}/secret/a")).allowed


def test_actions_match_case_insensitively_and_resources_exactly_with_iam_wildcards_only():
    who = principal(allow("S3:getobject", "arn:aws:s3:::lab.inputs/a?c"))
    assert evaluate(who, Request("s3:GetObject", "arn:aws:s3:::lab.inputs/abc")).allowed
    assert not evaluate(who, Request("s3:GetObject", "arn:aws:s3:::labXinputs/abc")).allowed  # `.` is literal
    assert not evaluate(who, Request("s3:GetObject", "arn:aws:s3:::lab.inputs/ABC")).allowed


def test_an_allow_whose_condition_fails_does_not_deny():
    who = principal(allow("batch:TagResource", "*", Condition={"StringEquals": {"aws:RequestTag/labbatch:lab": "a"}}),
                    allow("batch:TagResource", "*"))
    assert evaluate(who, Request("batch:TagResource", "arn:aws:batch:r:a:job/x", {"aws:RequestTag/labbatch:lab": "b"})).allowed


@pytest.mark.parametrize("condition, context, holds", [
    ({"StringEquals": {"aws:RequestTag/lab": ["a", "b"]}}, {"aws:RequestTag/lab": "b"}, True),
    ({"StringEquals": {"aws:RequestTag/lab": "a"}}, {}, False),
    ({"StringNotEquals": {"aws:RequestTag/lab": "a"}}, {}, True),
    ({"StringEqualsIfExists": {"aws:RequestTag/lab": "a"}}, {}, True),
    ({"StringLike": {"s3:prefix": ["jobs/*"]}}, {"s3:prefix": "jobs/j-1/"}, True),
    ({"StringLike": {"s3:prefix": ["jobs/*"]}}, {"s3:prefix": "tes/"}, False),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::1:role/*"}}, {"aws:PrincipalArn": "arn:aws:iam::1:role/x"}, True),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
    ({"Null": {"aws:RequestTag/lab": "true"}}, {}, True),
    ({"StringEquals": {"AWS:requesttag/lab": "a"}}, {"aws:RequestTag/lab": "a"}, True),  # key names ignore case
    ({"StringEquals": {"aws:RequestTag/Lab": "a"}}, {"aws:RequestTag/lab": "a"}, False),  # tag keys do not
])
def test_condition_operators(condition, context, holds):
    assert condition_holds(condition, context) is holds


def test_an_operator_local_mode_cannot_evaluate_is_refused_not_guessed():
    with pytest.raises(Unsupported, match="NumericLessThan"):
        condition_holds({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"})
    with pytest.raises(Unsupported, match="ForAnyValue"):
        condition_holds({"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}}, {})


def test_warn_mode_allows_what_strict_refuses_and_says_so():
    from labbatch.local.iam.actions import Where
    from labbatch.local.iam.enforce import Authorizer, Keys, Refused

    said: list[str] = []
    where = Where(account=ACCOUNT, region="us-east-1", kms_buckets={}, key_ids={})
    request = Request("s3:DeleteObject", f"{BUCKET}/a")
    for mode in ("strict", "warn"):
        authorizer = Authorizer(where=where, resource_policies={}, mode=mode, warn=said.append)
        authorizer.add(principal(), Keys("ASIA1", "s", "t"))
        if mode == "strict":
            with pytest.raises(Refused, match="not authorized to perform: s3:DeleteObject"):
                authorizer.check(principal(), [request])
        else:
            authorizer.check(principal(), [request])
    assert len(said) == 1 and "IAM would refuse" in said[0]
    [call] = authorizer.report()["principals"]["job-role"]["calls"]
    assert call["refused"].startswith("no identity-based") and call["calls"] == 1
