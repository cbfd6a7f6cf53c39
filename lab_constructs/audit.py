"""The opt-in audit trail (`audit: true`): who read or wrote which object and which ledger record.

A CloudTrail trail of data events only, for this lab's data buckets and its ledger table,
delivered into the lab's access-log bucket under `cloudtrail/` and encrypted with the lab's key.
It records no management events: the account's own trail (or CloudTrail's free event history)
holds those, and a second copy of management events is billed.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from labbatch_contract import names

from lab_constructs.compliance import acknowledge

TRAIL_PREFIX = "cloudtrail"


class AuditTrail(Construct):
    """Exposes `trail`. Data events bill per event ($0.10 per 100,000); nothing while idle."""

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, log_bucket: s3.Bucket,
                 data_buckets: list[s3.IBucket], table: dynamodb.ITable, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        trail_name = names.audit_trail(lab_name)
        trail_arn = stack.format_arn(service="cloudtrail", resource="trail", resource_name=trail_name)
        service = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        # CloudTrail's documented bucket policy, limited to this lab's trail by its ARN.
        log_bucket.add_to_resource_policy(iam.PolicyStatement(
            principals=[service], actions=["s3:GetBucketAcl"], resources=[log_bucket.bucket_arn],
            conditions={"StringEquals": {"aws:SourceArn": trail_arn}}))
        log_bucket.add_to_resource_policy(iam.PolicyStatement(
            principals=[service], actions=["s3:PutObject"],
            resources=[log_bucket.arn_for_objects(f"{TRAIL_PREFIX}/AWSLogs/{stack.account}/*")],
            conditions={"StringEquals": {"aws:SourceArn": trail_arn, "s3:x-amz-acl": "bucket-owner-full-control"}}))

        def selector(name: str, resource_type: str, operator: str, arns: list[str]):
            return cloudtrail.CfnTrail.AdvancedEventSelectorProperty(name=name, field_selectors=[
                cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="eventCategory", equal_to=["Data"]),
                cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="resources.type", equal_to=[resource_type]),
                cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field="resources.ARN", **{operator: arns}),
            ])

        self.trail = cloudtrail.CfnTrail(
            self, "Resource",
            trail_name=trail_name,
            is_logging=True,
            s3_bucket_name=log_bucket.bucket_name,
            s3_key_prefix=TRAIL_PREFIX,
            kms_key_id=key.key_arn,
            # Digest files prove that no log file was changed or removed after delivery.
            enable_log_file_validation=True,
            is_multi_region_trail=False,
            include_global_service_events=False,
            advanced_event_selectors=[
                selector("Objects read and written in the lab's buckets", "AWS::S3::Object", "starts_with",
                         [f"{bucket.bucket_arn}/" for bucket in data_buckets]),
                selector("Reads and writes of the lab's job ledger", "AWS::DynamoDB::Table", "equal_to",
                         [table.table_arn]),
            ],
        )
        # CloudTrail checks its bucket policy when the trail is created.
        self.trail.node.add_dependency(log_bucket.policy)
        acknowledge(self.trail, "HIPAA.Security-CloudTrailCloudWatchLogsEnabled",
                    "Data events are kept in S3, encrypted with the lab's key and validated by digest files; "
                    "copying every object read into CloudWatch Logs would bill $0.50 per GB ingested.")
