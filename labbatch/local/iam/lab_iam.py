"""One local lab's IAM: its principals (from the synthesized templates) with fresh credentials,
the resource policies on its buckets, key, API and topic, and the Authorizer that checks them.

The scientist (who is also the lab's operator locally) is the one principal the templates do
not define: in AWS a lab member's own IAM policy is the account's business. Local mode gives the
local scientist what a lab member's and an operator's policies would grant on this lab alone
(SCIENTIST_ACTIONS), so the API's resource policy, the buckets' policies and the key policy are
still what decides. Where the lab lists its API principals, the local scientist acts as the first
role or user among them (the API and the key let only those in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labbatch.local.iam import templates as tpl
from labbatch_contract import names
from labbatch.local.iam.actions import Where
from labbatch.local.iam.credentials import new_keys
from labbatch.local.iam.enforce import Authorizer, Keys
from labbatch.local.iam.evaluate import Principal

SCIENTIST = "scientist"
# What `labbatch` (submit, data, logs, why, doctor) and a scientist's own AWS calls need on one lab.
SCIENTIST_ACTIONS = {
    "execute-api": ["execute-api:Invoke"],
    "s3": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
           "s3:ListBucketVersions", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
           "s3:GetBucketLocation", "s3:GetEncryptionConfiguration", "s3:GetBucketVersioning"],
    "logs": ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams", "logs:DescribeLogGroups"],
    "batch": ["batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobQueues", "batch:DescribeJobDefinitions",
              "batch:DescribeComputeEnvironments"],
    # Watching the lab's alerts from a queue of their own (the lab's own subscriptions are e-mail).
    "sns": ["sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:GetTopicAttributes"],
    "sqs": ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage",
            "sqs:GetQueueUrl", "sqs:DeleteQueue"],
    # The operator's side: reading the ledger (`labbatch why`/`doctor`), pausing queues and environments.
    "dynamodb": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable"],
    "batch-admin": ["batch:UpdateJobQueue", "batch:UpdateComputeEnvironment"],
    "kms": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:GetKeyRotationStatus", "kms:ListAliases"],
}


@dataclass
class LabIam:
    authorizer: Authorizer
    keys: dict[str, Keys]  # principal name -> its credentials
    role_arns: dict[str, str]
    event_patterns: list[tuple[str, dict]]


def scientist_policy(lab: str, account: str, region: str, buckets: dict[str, str], key_arn: str | None,
                     log_group: str) -> tpl.Policy:
    resources = {
        "execute-api": [f"arn:aws:execute-api:{region}:{account}:*"],
        "s3": [arn for bucket in buckets.values() for arn in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*")],
        "logs": [f"arn:aws:logs:{region}:{account}:log-group:{log_group}:*", f"arn:aws:logs:{region}:{account}:log-group:*"],
        "batch": ["*"],
        "dynamodb": [f"arn:aws:dynamodb:{region}:{account}:table/{names.ledger_table(lab)}",
                     f"arn:aws:dynamodb:{region}:{account}:table/{names.ledger_table(lab)}/index/*"],
        "batch-admin": [f"arn:aws:batch:{region}:{account}:job-queue/{names.PREFIX}-{lab}-*",
                        f"arn:aws:batch:{region}:{account}:compute-environment/{names.PREFIX}-{lab}-*"],
        "sns": [f"arn:aws:sns:{region}:{account}:{names.alert_topic(lab)}"],
        "sqs": [f"arn:aws:sqs:{region}:{account}:*"],
        "kms": [key_arn] if key_arn else [],
    }
    statements = [{"Sid": f"LabMember{service.title().replace('-', '')}", "Effect": "Allow",
                   "Action": SCIENTIST_ACTIONS[service], "Resource": resources[service]}
                  for service in SCIENTIST_ACTIONS if resources[service]]
    return tpl.Policy(name=f"local-scientist-{lab}", document={"Version": "2012-10-17", "Statement": statements})


def scientist_arn(account: str, api_principals: list[str], lab_account: str | None) -> str:
    """The first role or user the lab lists as an API principal (in the local account when it is the
    lab's own), or a local user when it lists none."""
    for listed in api_principals:
        if lab_account and lab_account != account:
            listed = listed.replace(lab_account, account)
        if listed.startswith(f"arn:aws:iam::{account}:") and (":role/" in listed or ":user/" in listed):
            return listed
    return f"arn:aws:iam::{account}:user/local-scientist"


def build(stacks: dict[str, dict], *, lab: str, account: str, region: str, buckets: dict[str, str],
          key_arn: str | None, log_group: str, mode: str, unrestricted: list[str],
          ssm: dict[str, str] | None = None, lab_account: str | None = None,
          api_principals: list[str] | None = None) -> LabIam:
    key_id = key_arn.rsplit("/", 1)[-1] if key_arn else None
    place = tpl.Place(account=account, region=region, ssm=ssm or {}, key_id=key_id, lab_account=lab_account)
    roles = tpl.roles(stacks, place)
    role_arns = tpl.principal_roles(stacks, place)
    key_ids: dict[str, str] = {}
    if key_arn:
        key_ids = {key_id: key_arn, key_arn: key_arn, f"alias/labbatch-{lab}": key_arn}
    where = Where(account=account, region=region, key_ids=key_ids,
                  kms_buckets={b: key_arn for b in buckets.values()} if key_arn else {},
                  kms_topics={f"arn:aws:sns:{region}:{account}:{names.alert_topic(lab)}": key_arn} if key_arn else {})
    authorizer = Authorizer(where=where, resource_policies=tpl.resource_policies(stacks, place), mode=mode,
                            unrestricted=unrestricted)
    keys: dict[str, Keys] = {}
    for name, arn in role_arns.items():
        role = roles[arn]
        keys[name] = new_keys(name)
        authorizer.add(Principal(name=name, arn=arn, account=account, tags=role.tags, policies=role.policies), keys[name])
    # A lab member signs with a user's long-term keys: no session token (the API refuses one it cannot check).
    keys[SCIENTIST] = new_keys(SCIENTIST, long_term=True)
    authorizer.add(Principal(name=SCIENTIST, arn=scientist_arn(account, api_principals or [], lab_account),
                             account=account,
                             policies=(scientist_policy(lab, account, region, buckets, key_arn, log_group),
                                       *tpl.member_policies(stacks, place))),
                   keys[SCIENTIST])
    return LabIam(authorizer=authorizer, keys=keys, role_arns=role_arns,
                  event_patterns=tpl.event_patterns(stacks, place))


def foreign_principals(stacks: dict[str, dict], *, account: str, region: str) -> list[tuple[Principal, Any]]:
    """Another lab's role principals as they would act in this account (for isolation checks)."""
    place = tpl.Place(account=account, region=region)
    roles = tpl.roles(stacks, place)
    return [(Principal(name=f"other-lab:{name}", arn=arn, account=account, tags=roles[arn].tags,
                       policies=roles[arn].policies), new_keys(name))
            for name, arn in tpl.principal_roles(stacks, place).items()]
