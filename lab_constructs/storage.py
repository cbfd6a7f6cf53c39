"""The lab's buckets: inputs, references, results, and the access-log bucket behind them."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from labbatch_contract import names

from lab_constructs.compliance import acknowledge
from labbatch.lab.config import Storage

DATA_BUCKETS = ("inputs", "references", "results")


class LabBuckets(Construct):
    """Encrypted, TLS-only, private, versioned buckets that outlive the stack (RETAIN).

    The construct IDs below name stateful resources: never change them, or CloudFormation
    replaces the bucket (and, being RETAIN, orphans the old one with the lab's data).
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, storage: Storage,
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # With the lab's key: SSE-KMS, and S3 Bucket Keys so that staging a thousand files costs
        # a handful of KMS requests, not a thousand.
        encryption = dict(encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True) \
            if key else dict(encryption=s3.BucketEncryption.S3_MANAGED)

        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            bucket_name=names.bucket(lab_name, "logs", stack.account, stack.region),
            **encryption,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs",
                                 expiration=Duration.days(storage.access_log_expiry_days)),
                s3.LifecycleRule(id="abort-incomplete-uploads",
                                 abort_incomplete_multipart_upload_after=Duration.days(
                                     storage.abort_incomplete_multipart_days)),
            ],
        )

        acknowledge(self.access_logs, "HIPAA.Security-S3BucketVersioningEnabled",
                    "S3 writes server access logs once and never rewrites them; they expire on a schedule.")

        self.buckets: dict[str, s3.Bucket] = {}
        for kind in DATA_BUCKETS:
            self.buckets[kind] = s3.Bucket(
                self, kind.capitalize(),
                bucket_name=names.bucket(lab_name, kind, stack.account, stack.region),
                **encryption,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                # Raw reads, references and results must survive an overwrite or a stray delete.
                versioned=True,
                removal_policy=RemovalPolicy.RETAIN,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{kind}/",
                lifecycle_rules=[
                    s3.LifecycleRule(id="expire-work", prefix="work/",
                                     expiration=Duration.days(storage.work_expiry_days)),
                    s3.LifecycleRule(id="expire-noncurrent-versions",
                                     noncurrent_version_expiration=Duration.days(
                                         storage.noncurrent_version_expiry_days)),
                    s3.LifecycleRule(id="abort-incomplete-uploads",
                                     abort_incomplete_multipart_upload_after=Duration.days(
                                         storage.abort_incomplete_multipart_days)),
                ],
            )
        for bucket in [self.access_logs, *self.buckets.values()]:
            if key is None:
                acknowledge(bucket, "HIPAA.Security-S3DefaultEncryptionKMS",
                            "SSE-S3 encrypts every object with AES-256 at no fixed cost; a customer KMS key adds "
                            "$1/month per key and a charge per request on every staged file.")
            acknowledge(bucket, "HIPAA.Security-S3BucketReplicationEnabled",
                        "Cross-Region replication doubles the lab's storage bill; versioning, RETAIN and "
                        "noncurrent-version expiry protect the data against mistakes within the Region.")
