"""The stateful stack: buckets that keep data safe and outlive the stack."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.cdk.conftest import resources

# Logical IDs of stateful resources are a promise: a changed ID replaces the bucket.
PINNED_BUCKET_IDS = {"BucketsAccessLogsA5F88218", "BucketsInputs2121D50A", "BucketsReferencesA6AE63EC",
                     "BucketsResultsB59121EA"}


def test_storage_stack_has_termination_protection(synthesized, cdk_context):
    # Termination protection lives on the stack artifact, not in the template.
    import aws_cdk as cdk
    from labbatch.lab.loader import load_labs
    from stacks.lab import build_lab
    from tests.conftest import LABS_DIR
    app = cdk.App(context=cdk_context)
    stacks = build_lab(app, load_labs(LABS_DIR, only="example")[0])
    assert stacks.storage.termination_protection is True
    assert stacks.compute.termination_protection is False


def test_four_buckets_all_retained(synthesized):
    buckets = resources(synthesized["example"].storage_json, "AWS::S3::Bucket")
    assert len(buckets) == 4
    for bucket in buckets.values():
        assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"


def test_bucket_logical_ids_are_pinned(synthesized):
    buckets = resources(synthesized["example"].storage_json, "AWS::S3::Bucket")
    assert set(buckets) == PINNED_BUCKET_IDS


def test_bucket_names_carry_lab_account_and_region(synthesized):
    buckets = resources(synthesized["example"].storage_json, "AWS::S3::Bucket")
    names = sorted(b["Properties"]["BucketName"]["Fn::Join"][1][0] for b in buckets.values())
    assert names == ["labbatch-example-inputs-", "labbatch-example-logs-",
                     "labbatch-example-references-", "labbatch-example-results-"]
    core = resources(synthesized["genomics-core"].storage_json, "AWS::S3::Bucket")
    assert "labbatch-genomics-core-results-111122223333-eu-west-1" in {
        b["Properties"]["BucketName"] for b in core.values()}


def test_every_bucket_is_encrypted_and_blocks_public_access(synthesized):
    for bucket in resources(synthesized["example"].storage_json, "AWS::S3::Bucket").values():
        props = bucket["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}


def test_every_bucket_refuses_plain_http(synthesized):
    policies = resources(synthesized["example"].storage_json, "AWS::S3::BucketPolicy")
    assert len(policies) == 4
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements)


def test_data_buckets_are_versioned_and_log_access(synthesized):
    template = synthesized["example"].storage
    for kind in ("inputs", "references", "results"):
        template.has_resource_properties("AWS::S3::Bucket", {
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {"DestinationBucketName": {"Ref": "BucketsAccessLogsA5F88218"},
                                     "LogFilePrefix": f"{kind}/"},
        })


def test_lifecycle_expires_work_noncurrent_and_incomplete_uploads(synthesized):
    core = synthesized["genomics-core"].storage
    core.has_resource_properties("AWS::S3::Bucket", {
        "LifecycleConfiguration": {"Rules": Match.array_with([
            Match.object_like({"Id": "expire-work", "Prefix": "work/", "ExpirationInDays": 7, "Status": "Enabled"}),
            Match.object_like({"Id": "expire-noncurrent-versions",
                               "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}),
            Match.object_like({"Id": "abort-incomplete-uploads",
                               "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}),
        ])},
    })
