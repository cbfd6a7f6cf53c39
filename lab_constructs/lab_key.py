"""The compliance tier's customer-managed key: one per lab, used by everything that stores data.

Only `encryption: kms` labs have one ($1/month). The key lives in the stateful stack with the
buckets and the ledger; the other stacks read its ARN from an SSM parameter at deploy time,
as they find the buckets by name, so no stack ever locks the stateful one with an export.

Who may use it is decided here, in the key policy, not by IAM alone:
- the account may administer the key but not use it (no Encrypt/Decrypt/GenerateDataKey for
  administrators: an admin with `kms:*` in IAM still cannot read the lab's data);
- the lab's own roles may use it: roles carrying the `labbatch:lab` tag with this lab's name
  (every role of the lab's stacks carries it; a second lab's roles carry their own);
- the lab's people, its `api.principals` (or its account when none are listed), may read and
  write the lab's objects through S3 only, to upload inputs and download results;
- the CloudFormation execution role may let DynamoDB and Lambda create their grants at deploy;
- AWS services, each only for this lab's resources: CloudWatch Logs for /labbatch/<lab>/ log
  groups, S3 server access logging for the lab's buckets, AWS Budgets for the alert topic,
  CloudTrail for the lab's trail, and EC2 Auto Scaling (through which Batch starts instances)
  for the scratch and root volumes.
"""

from __future__ import annotations

from aws_cdk import DefaultStackSynthesizer, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from labbatch_contract import names

LAB_TAG = names.LAB_TAG
# The key's logical ID, pinned: a refactor of the construct tree must never replace the key,
# which would leave every object, record and volume encrypted under the old one.
KEY_LOGICAL_ID = "LabKey"
# Administration only: no cryptographic operation and no kms:CreateGrant (which would let an
# administrator hand use of the key to anyone).
ADMIN_ACTIONS = [
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags",
    "kms:ListKeyRotations", "kms:ListGrants", "kms:ListAliases", "kms:PutKeyPolicy", "kms:UpdateKeyDescription",
    "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:RotateKeyOnDemand", "kms:EnableKey", "kms:DisableKey",
    "kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias", "kms:TagResource", "kms:UntagResource",
    "kms:RevokeGrant", "kms:RetireGrant", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
]
USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
# What a service needs to encrypt and decrypt on the lab's behalf.
SERVICE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                   "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"]
AUTOSCALING_ROLE = "aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
DATA_BUCKET_KINDS = ("inputs", "references", "results")


class LabKey(Construct):
    """Exposes `key`. Rotation on, RETAIN, 30 days' pending window before any deletion."""

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, audit: bool,
                 people: list[str]) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        account, region, partition = stack.account, stack.region, stack.partition
        root = iam.AccountRootPrincipal()
        log_groups = f"arn:{partition}:logs:{region}:{account}:log-group:/{names.PREFIX}/{lab_name}/*"
        statements = [
            iam.PolicyStatement(sid="AdministerNotUse", principals=[root], actions=ADMIN_ACTIONS, resources=["*"]),
            iam.PolicyStatement(
                sid="UseByTheLabsRoles", principals=[root], actions=USE_ACTIONS, resources=["*"],
                conditions={"StringEquals": {f"aws:PrincipalTag/{LAB_TAG}": lab_name},
                            "ArnLike": {"aws:PrincipalArn": f"arn:{partition}:iam::{account}:role/*"}}),
            iam.PolicyStatement(
                sid="DeployerCreatesServiceGrants", principals=[root],
                actions=["kms:CreateGrant", "kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"ArnEquals": {"aws:PrincipalArn": _deployer_role_arn(stack)},
                            "StringEquals": {"kms:ViaService": [f"dynamodb.{region}.amazonaws.com",
                                                                f"lambda.{region}.amazonaws.com"]}}),
            iam.PolicyStatement(
                sid="CloudWatchLogsForTheLabsLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")], actions=SERVICE_ACTIONS,
                resources=["*"], conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}}),
            iam.PolicyStatement(
                sid="S3ServerAccessLogsOfTheLabsBuckets",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")], actions=["kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": account},
                            "ArnEquals": {"aws:SourceArn": [
                                f"arn:{partition}:s3:::{names.bucket(lab_name, kind, account, region)}"
                                for kind in DATA_BUCKET_KINDS]}}),
            iam.PolicyStatement(
                sid="BudgetsPublishToTheAlertTopic", principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": account}}),
            # Batch starts instances through EC2 Auto Scaling, whose service-linked role encrypts
            # the scratch and root volumes; its AWS-maintained policy covers only AWS managed keys.
            iam.PolicyStatement(
                sid="AutoScalingEncryptsTheLabsVolumes",
                principals=[iam.ArnPrincipal(f"arn:{partition}:iam::{account}:role/{AUTOSCALING_ROLE}")],
                actions=SERVICE_ACTIONS, resources=["*"]),
            iam.PolicyStatement(
                sid="AutoScalingAttachesTheLabsVolumes",
                principals=[iam.ArnPrincipal(f"arn:{partition}:iam::{account}:role/{AUTOSCALING_ROLE}")],
                actions=["kms:CreateGrant"], resources=["*"],
                conditions={"Bool": {"kms:GrantIsForAWSResource": True}}),
        ]
        statements += _people_statements(people, account, region)
        if audit:
            trail = f"arn:{partition}:cloudtrail:{region}:{account}:trail/{names.audit_trail(lab_name)}"
            statements.append(iam.PolicyStatement(
                sid="CloudTrailEncryptsTheLabsTrail", principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:DescribeKey"], resources=["*"],
                conditions={"StringEquals": {"aws:SourceArn": trail},
                            "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                           f"arn:{partition}:cloudtrail:*:{account}:trail/{names.audit_trail(lab_name)}"}}))
        self.key = kms.Key(
            self, "Key",
            description=f"LabBatch {lab_name}: encrypts the lab's buckets, ledger, logs, topic, queues, "
                        "Lambda environments and EBS volumes",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN,
            policy=iam.PolicyDocument(statements=statements),
            alias=names.kms_alias(lab_name),
        )
        cfn_key: kms.CfnKey = self.key.node.default_child
        cfn_key.override_logical_id(KEY_LOGICAL_ID)
        # The key policy is exactly the statements above. CDK adds its own when a construct grants
        # a service use of the key (a bucket logging into a KMS bucket grants S3 logging
        # Encrypt/Decrypt with no condition at all); this drops them, so whoever reads this file
        # reads the whole policy.
        cfn_key.add_property_override("KeyPolicy", iam.PolicyDocument(statements=statements))
        ssm.StringParameter(
            self, "KeyArnParameter", parameter_name=names.kms_key_parameter(lab_name), string_value=self.key.key_arn,
            description=f"LabBatch {lab_name}: ARN of the lab's customer-managed key, read by its other stacks")


def _people_statements(people: list[str], account: str, region: str) -> list[iam.PolicyStatement]:
    """Uploading inputs and downloading results are S3 calls of SSE-KMS objects: only through S3."""
    actions = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    via_s3 = {"kms:ViaService": f"s3.{region}.amazonaws.com"}
    arns = [p for p in people if not p.endswith(":root")]
    accounts = sorted({p.split(":")[4] for p in people if p.endswith(":root")})
    statements = []
    if arns:
        statements.append(iam.PolicyStatement(
            sid="TheLabsPrincipalsUseDataThroughS3", actions=actions, resources=["*"],
            principals=[iam.AccountPrincipal(a) for a in sorted({p.split(":")[4] for p in arns})],
            conditions={"StringEquals": via_s3, "ArnEquals": {"aws:PrincipalArn": arns}}))
    if accounts or not people:
        # No principals listed: the API admits the lab's own account, and so does the key.
        statements.append(iam.PolicyStatement(
            sid="TheLabsAccountsUseDataThroughS3", actions=actions, resources=["*"],
            principals=[iam.AccountPrincipal(a) for a in accounts] or [iam.AccountRootPrincipal()],
            conditions={"StringEquals": {**via_s3, "kms:CallerAccount": accounts or [account]}}))
    return statements


def _deployer_role_arn(stack: Stack) -> str:
    synthesizer = stack.synthesizer
    if isinstance(synthesizer, DefaultStackSynthesizer) and synthesizer.cloud_formation_execution_role_arn:
        # The synthesizer writes ${AWS::AccountId}-style placeholders for CloudFormation to fill.
        return Fn.sub(synthesizer.cloud_formation_execution_role_arn)
    raise ValueError("encryption: kms needs CDK's default synthesizer, whose CloudFormation execution role "
                     "the key policy names as the deployer")


def lab_key(scope: Construct, lab_name: str, encryption: str) -> kms.IKey | None:
    """The lab's key in a stack other than the storage stack, or None for a `managed` lab.

    Its ARN is resolved by CloudFormation at deploy from the SSM parameter the storage stack
    writes (an SSM-typed stack parameter): no lookup at synth, no cross-stack export.
    """
    if encryption != "kms":
        return None
    arn = ssm.StringParameter.value_for_string_parameter(scope, names.kms_key_parameter(lab_name))
    return kms.Key.from_key_arn(scope, "LabKey", arn)


def allow_use(role: iam.IRole, key: kms.IKey, actions: list[str]) -> None:
    """The identity half of the lab's roles' access; the key policy's tag condition is the other."""
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[key.key_arn]))
