"""Requests named as IAM names them (Service Authorization Reference), from the wire format."""

from __future__ import annotations

import json

import pytest

from labbatch.local.iam.actions import Unnamed, Where, batch_requests, json_requests, s3_requests

KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
WHERE = Where(account="123456789012", region="us-east-1", kms_buckets={"vault-inputs": KEY}, key_ids={"k": KEY})


def names(requests) -> list[tuple[str, str]]:
    return [(r.action, r.resource) for r in requests]


@pytest.mark.parametrize("method, path, query, expected", [
    ("GET", "/b/k/x.txt", "", [("s3:GetObject", "arn:aws:s3:::b/k/x.txt")]),
    ("HEAD", "/b/k", "", [("s3:GetObject", "arn:aws:s3:::b/k")]),
    ("PUT", "/b/k", "", [("s3:PutObject", "arn:aws:s3:::b/k")]),
    ("POST", "/b/k", "uploads", [("s3:PutObject", "arn:aws:s3:::b/k")]),
    ("DELETE", "/b/k", "uploadId=1", [("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")]),
    ("DELETE", "/b/k", "versionId=3", [("s3:DeleteObjectVersion", "arn:aws:s3:::b/k")]),
    ("GET", "/b", "list-type=2&prefix=jobs%2F", [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("HEAD", "/b", "", [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("GET", "/b", "versioning", [("s3:GetBucketVersioning", "arn:aws:s3:::b")]),
])
def test_s3_requests(method, path, query, expected):
    assert names(s3_requests(method, path, query, {}, b"", WHERE)) == expected


def test_a_listing_carries_its_prefix_as_s3_prefix():
    [listing] = s3_requests("GET", "/b", "list-type=2&prefix=jobs/j-1/", {}, b"", WHERE)
    assert listing.context["s3:prefix"] == "jobs/j-1/"
    [bare] = s3_requests("GET", "/b", "list-type=2", {}, b"", WHERE)
    assert "s3:prefix" not in bare.context


def test_sse_kms_buckets_make_s3_call_kms_for_the_caller():
    put = s3_requests("PUT", "/vault-inputs/a", "", {}, b"", WHERE)
    assert names(put) == [("s3:PutObject", "arn:aws:s3:::vault-inputs/a"), ("kms:GenerateDataKey", KEY)]
    assert put[1].context["kms:ViaService"] == "s3.us-east-1.amazonaws.com"
    assert names(s3_requests("GET", "/vault-inputs/a", "", {}, b"", WHERE))[1] == ("kms:Decrypt", KEY)
    copy = s3_requests("PUT", "/b/c", "", {"x-amz-copy-source": "/vault-inputs/a"}, b"", WHERE)
    assert ("s3:GetObject", "arn:aws:s3:::vault-inputs/a") in names(copy) and ("kms:Decrypt", KEY) in names(copy)


def test_delete_objects_is_one_delete_per_key():
    body = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key></Object><Object><Key>b/c</Key></Object></Delete>'
    assert names(s3_requests("POST", "/b", "delete", {}, body, WHERE)) == [
        ("s3:DeleteObject", "arn:aws:s3:::b/a"), ("s3:DeleteObject", "arn:aws:s3:::b/b/c")]


def test_json_protocols_name_table_index_log_stream_and_key():
    query = json_requests("DynamoDB_20120810.Query", json.dumps({"TableName": "t", "IndexName": "by_created"}).encode(), WHERE)
    assert names(query) == [("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/by_created")]
    put = json_requests("Logs_20140328.PutLogEvents", json.dumps({"logGroupName": "/g", "logStreamName": "s"}).encode(), WHERE)
    assert names(put) == [("logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:/g:log-stream:s")]
    decrypt = json_requests("TrentService.Decrypt", json.dumps({"KeyId": "k"}).encode(), WHERE)
    assert names(decrypt) == [("kms:Decrypt", KEY)]
    with pytest.raises(Unnamed):
        json_requests("SomethingElse_2020.Do", b"{}", WHERE)


def test_submit_job_names_queue_definition_and_the_tags_it_sets():
    found = batch_requests("/v1/submitjob", {"jobQueue": "q", "jobDefinition": "d:3", "tags": {"labbatch:lab": "x"}}, WHERE)
    assert names(found) == [("batch:SubmitJob", "arn:aws:batch:us-east-1:123456789012:job-queue/q"),
                            ("batch:SubmitJob", "arn:aws:batch:us-east-1:123456789012:job-definition/d:3"),
                            ("batch:TagResource", "arn:aws:batch:us-east-1:123456789012:job/*")]
    assert found[2].context["aws:RequestTag/labbatch:lab"] == "x"


def test_registering_a_job_definition_passes_its_roles():
    found = batch_requests("/v1/registerjobdefinition", {"jobDefinitionName": "tes-1", "containerProperties": {
        "jobRoleArn": "arn:aws:iam::123456789012:role/job"}}, WHERE)
    assert ("iam:PassRole", "arn:aws:iam::123456789012:role/job") in names(found)


def test_stopping_a_job_carries_its_tags_as_resource_tags():
    [stop] = batch_requests("/v1/terminatejob", {"jobId": "j1", "reason": "x"}, WHERE, lambda job: {"labbatch:lab": "a"})
    assert stop.resource.endswith(":job/j1") and stop.context["aws:ResourceTag/labbatch:lab"] == "a"


def test_publishing_to_an_encrypted_topic_uses_its_key():
    from labbatch.local.iam.actions import query_requests
    topic = "arn:aws:sns:us-east-1:123456789012:labbatch-vault-alerts"
    where = Where(account="123456789012", region="us-east-1", kms_buckets={}, key_ids={}, kms_topics={topic: KEY})
    body = f"Action=Publish&TopicArn={topic}&Message=x".encode()
    found = query_requests("sns", body, "", where)
    assert names(found) == [("sns:Publish", topic), ("kms:GenerateDataKey", KEY), ("kms:Decrypt", KEY)]
    assert found[1].context["kms:ViaService"] == "sns.us-east-1.amazonaws.com"
    assert names(query_requests("sns", body, "", WHERE)) == [("sns:Publish", topic)]
