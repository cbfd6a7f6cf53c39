"""A lab with `encryption: kms` in local mode: the key exists in the emulator, every store uses it,
and the runner and the API work unchanged (stage-in, stage-out, sample lists, the ledger)."""

from __future__ import annotations

import gzip
from pathlib import Path

import boto3
import pytest
import yaml

from tests.e2e.conftest import ROOT, RunningLab, start_local
from tests.e2e.test_local_mode import READS_A, READS_B, assert_stats, fastq, wait


def start_kms_lab(tmp_path: Path) -> RunningLab:
    labs = tmp_path / "labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data.update(name="vault", encryption="kms", audit=True)
    (labs / "vault.yaml").write_text(yaml.safe_dump(data))
    # In containers when the engine holds the images, as `labbatch local` chooses by itself.
    return start_local(tmp_path, "--lab", "vault", labs_dir=labs, containers=True)


@pytest.fixture(scope="module")
def kms_lab(tmp_path_factory):
    lab = start_kms_lab(tmp_path_factory.mktemp("kms"))
    yield lab
    assert lab.stop() == 0


def aws(lab: RunningLab, service: str):
    creds = lab.info["credentials"]
    return boto3.client(service, endpoint_url=lab.info["aws_endpoint"], region_name=lab.info["region"],
                        aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])


def encrypted_with(lab: RunningLab, uri: str) -> tuple[str | None, str | None, bool | None]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    head = lab.s3().head_object(Bucket=bucket, Key=key)
    return head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"), head.get("BucketKeyEnabled")


def test_the_lab_key_exists_rotates_and_carries_the_labs_alias(kms_lab):
    key_arn = kms_lab.info["kms_key"]
    assert key_arn and ":key/" in key_arn
    kms = aws(kms_lab, "kms")
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases(KeyId=key_arn)["Aliases"]}
    assert "alias/labbatch-vault" in aliases


def test_every_store_of_the_local_lab_names_the_key(kms_lab):
    key_arn = kms_lab.info["kms_key"]
    s3 = kms_lab.s3()
    for bucket in kms_lab.info["buckets"].values():
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
        assert rule["BucketKeyEnabled"] is True
    table = aws(kms_lab, "dynamodb").describe_table(TableName="labbatch-vault-jobs")["Table"]
    assert table["SSEDescription"]["SSEType"] == "KMS" and table["SSEDescription"]["KMSMasterKeyArn"] == key_arn
    groups = aws(kms_lab, "logs").describe_log_groups(logGroupNamePrefix=kms_lab.info["log_group"])["logGroups"]
    assert groups[0]["kmsKeyId"] == key_arn
    topic = aws(kms_lab, "sns").get_topic_attributes(TopicArn=kms_lab.info["alert_topic"])["Attributes"]
    assert topic["KmsMasterKeyId"] == key_arn


def test_a_job_stages_kms_objects_in_and_out_and_its_results_are_encrypted(kms_lab):
    key_arn = kms_lab.info["kms_key"]
    uri = kms_lab.put("inputs", "kms/a.fastq.gz", gzip.compress(fastq(READS_A)))
    assert encrypted_with(kms_lab, uri)[:2] == ("aws:kms", key_arn)
    client = kms_lab.client()
    job = client.submit("fastq-stats", [uri], name="kms-a")
    record = wait(client, job["job_id"])
    assert record["status"] == "SUCCEEDED", record
    assert_stats(kms_lab.read_json(f"{job['output_prefix']}stats.json"), READS_A)
    for name in ("stats.json", "manifest.json"):
        assert encrypted_with(kms_lab, f"{job['output_prefix']}{name}") == ("aws:kms", key_arn, True)
    manifest = kms_lab.read_json(f"{job['output_prefix']}manifest.json")
    assert manifest["status"] == "succeeded" and manifest["job_id"] == job["job_id"]
    # The handler's ledger writes and reads on the KMS table: the job is listed and found.
    assert job["job_id"] in [j["job_id"] for j in client.list(pipeline="fastq-stats")["jobs"]]


def test_an_array_job_writes_its_sample_list_and_results_under_the_key(kms_lab):
    key_arn = kms_lab.info["kms_key"]
    a = kms_lab.put("inputs", "kms/arr-a.fastq", fastq(READS_A))
    b = kms_lab.put("inputs", "kms/arr-b.fastq", fastq(READS_B))
    client = kms_lab.client()
    job = client.submit("fastq-stats", samples=[{"name": "a", "inputs": [a]}, {"name": "b", "inputs": [b]}])
    record = wait(client, job["job_id"])
    assert record["status"] == "SUCCEEDED"
    assert_stats(kms_lab.read_json(f"{job['output_prefix']}a/stats.json"), READS_A)
    assert_stats(kms_lab.read_json(f"{job['output_prefix']}b/stats.json"), READS_B)
    # The handler put the sample list into the inputs bucket (work/samples/): encrypted like the rest.
    listed = kms_lab.s3().list_objects_v2(Bucket=kms_lab.info["buckets"]["inputs"], Prefix="work/samples/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert keys
    assert all(encrypted_with(kms_lab, f"s3://{kms_lab.info['buckets']['inputs']}/{k}")[:2] == ("aws:kms", key_arn)
               for k in keys)
