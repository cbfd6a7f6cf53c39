"""Acknowledging cdk-nag findings that are LabBatch design decisions, each with its reason.

cdk-nag 3 runs as CDK policy-validation plugins and names each finding `RuleId[FindingId]`;
an acknowledgment must match one finding exactly, on the construct that has it.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """`rule` as cdk-nag names it, e.g. `AwsSolutions-VPC7` or `HIPAA.Security-LambdaDLQ`."""
    pack = "AwsSolutions" if rule.startswith("AwsSolutions-") else "HIPAA.Security"
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{pack}::{rule}", reason=reason))


def nag_text(construct: IConstruct, value: str) -> str:
    """A string as cdk-nag renders it in finding ids: references become <Name> or <Id.Attr>."""
    return _render(Stack.of(construct).resolve(value))


def _render(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return "<" + ".".join(value["Fn::GetAtt"]) + ">"
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(_render(p) for p in parts)
    raise ValueError(f"cannot render {value!r} as cdk-nag does")


def acknowledge_wildcard_resources(construct: IConstruct, resources: list[str], reason: str) -> None:
    for resource in resources:
        acknowledge(construct, f"AwsSolutions-IAM5[Resource::{nag_text(construct, resource)}]", reason)


def acknowledge_log_group_encryption(log_group: IConstruct) -> None:
    acknowledge(log_group, "HIPAA.Security-CloudWatchLogGroupEncrypted",
                "CloudWatch Logs encrypts every log group at rest with service-managed keys; a customer KMS "
                "key would add a fixed monthly cost per lab.")


def acknowledge_inline_policy(policy: IConstruct) -> None:
    acknowledge(policy, "HIPAA.Security-IAMNoInlinePolicy",
                "CDK grants write one policy per role, scoped to this lab's resources and attached to no "
                "other role; a managed policy would only add a second name for the same document.")
