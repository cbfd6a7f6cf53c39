"""What `labbatch why` and `labbatch doctor` need, beyond the job API, to say why no instance joined.

An instance whose boot step failed never starts the ECS agent, so neither Batch nor the job API
sees it; its console does (labbatch_contract/boot_reasons.py). The client reads it with the
caller's own credentials (labbatch/client/boot_reasons.py): the lab's compute environments and their
clusters come from GET /lab, then ECS (has any instance joined?), EC2 (which instances did the
environment launch?) and the console of each. This managed policy, named
labbatch-<lab>-diagnose, grants exactly those reads; a platform engineer attaches it to the
people who run doctor. Without it both commands say they could not look, and nothing else
changes.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from labbatch_contract import names

from lab_constructs.compliance import acknowledge_wildcard_resources


class BootDiagnosisPolicy(Construct):
    """Exposes `policy` (managed, named labbatch-<lab>-diagnose)."""

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        clusters = stack.format_arn(service="ecs", resource="cluster", resource_name="*")
        instances = stack.format_arn(service="ec2", resource="instance", resource_name="*")
        self.policy = iam.ManagedPolicy(
            self, "Policy", managed_policy_name=names.diagnose_policy(lab_name),
            description=f"LabBatch {lab_name}: read why the lab's instances did not join their clusters "
                        "(labbatch why / doctor)",
            statements=[
                iam.PolicyStatement(sid="ListJoinedInstances", actions=["ecs:ListContainerInstances"],
                                    resources=[clusters]),
                iam.PolicyStatement(sid="FindLabInstances", actions=["ec2:DescribeInstances"], resources=["*"]),
                iam.PolicyStatement(sid="ReadLabInstanceConsoles", actions=["ec2:GetConsoleOutput"],
                                    resources=[instances],
                                    conditions={"StringEquals": {f"aws:ResourceTag/{names.LAB_TAG}": lab_name}}),
            ])
        acknowledge_wildcard_resources(self.policy, ["*"], "ec2:DescribeInstances has no resource-level "
                                       "permissions (Service Authorization Reference, Amazon EC2).")
        acknowledge_wildcard_resources(self.policy, [clusters], "Batch names each environment's ECS cluster "
                                       "when it creates it; listing a cluster's instance ARNs reveals nothing else.")
        acknowledge_wildcard_resources(self.policy, [instances], "Instance ids are EC2's, chosen at launch; the "
                                       "console is readable only on instances carrying this lab's tag (condition).")
