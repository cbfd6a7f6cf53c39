"""What an AWS request asks, in IAM's terms: action, resource ARN and request context keys.

From the wire format botocore sends to the emulator: S3's REST paths (path-style on loopback),
the JSON protocols' X-Amz-Target (DynamoDB, CloudWatch Logs, KMS), the query protocol's Action
(SNS, STS) and Batch's REST-JSON paths. Action names and resource types follow the Service
Authorization Reference. A request it cannot name raises Unnamed, so strict mode refuses it
with that reason instead of guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree

from labbatch.local.iam.evaluate import Request


class Unnamed(ValueError):
    pass


@dataclass(frozen=True)
class Where:
    account: str
    region: str
    kms_buckets: dict[str, str]  # bucket -> key ARN of buckets encrypted with the lab key by default
    key_ids: dict[str, str]  # key id or alias name -> key ARN
    kms_topics: dict[str, str] = field(default_factory=dict)  # topic ARN -> key ARN of encrypted topics


_SERVICE_BY_TARGET = {"DynamoDB_20120810": "dynamodb", "Logs_20140328": "logs", "TrentService": "kms",
                      "AmazonSQS": "sqs"}
_BUCKET_SUBRESOURCES = {
    ("GET", "versioning"): "GetBucketVersioning", ("PUT", "versioning"): "PutBucketVersioning",
    ("GET", "encryption"): "GetEncryptionConfiguration", ("PUT", "encryption"): "PutEncryptionConfiguration",
    ("GET", "location"): "GetBucketLocation", ("GET", "policy"): "GetBucketPolicy",
    ("PUT", "policy"): "PutBucketPolicy", ("GET", "tagging"): "GetBucketTagging",
    ("PUT", "tagging"): "PutBucketTagging", ("GET", "versions"): "ListBucketVersions",
    ("GET", "uploads"): "ListBucketMultipartUploads", ("GET", "lifecycle"): "GetLifecycleConfiguration",
    ("PUT", "lifecycle"): "PutLifecycleConfiguration", ("GET", "acl"): "GetBucketAcl",
}


def s3_requests(method: str, path: str, query: str, headers: dict[str, str], body: bytes, where: Where) -> list[Request]:
    """Every authorization S3 makes for one request: the S3 action(s), and for SSE-KMS the KMS
    calls it makes on the caller's behalf (kms:ViaService s3.<region>.amazonaws.com)."""
    parts = unquote(path).lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    params = parse_qs(query, keep_blank_values=True)
    context = {"aws:SecureTransport": "true"}
    if "x-amz-server-side-encryption" in headers:
        context["s3:x-amz-server-side-encryption"] = headers["x-amz-server-side-encryption"]
    if not bucket:
        return [Request("s3:ListAllMyBuckets", "*", context)]
    bucket_arn, object_arn = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{key}"
    if not key:
        if method == "POST" and "delete" in params:
            return [Request("s3:DeleteObject", f"{bucket_arn}/{k}", context) for k in _deleted_keys(body)]
        for (verb, name), action in _BUCKET_SUBRESOURCES.items():
            if verb == method and name in params:
                return [Request(f"s3:{action}", bucket_arn, context)]
        if method == "GET":
            # ListObjects(V2): s3:prefix is in the request context when the listing names a prefix.
            prefix = {"s3:prefix": params["prefix"][-1]} if "prefix" in params else {}
            return [Request("s3:ListBucket", bucket_arn, {**context, **prefix})]
        simple = {"GET": "ListBucket", "HEAD": "ListBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}
        if method in simple:
            return [Request(f"s3:{simple[method]}", bucket_arn, context)]
        raise Unnamed(f"S3 {method} on bucket {bucket} with {sorted(params)}")
    found: list[Request] = []
    kms = _sse_kms_key(bucket, headers, where)
    if method in ("GET", "HEAD"):
        if "uploadId" in params:
            return [Request("s3:ListMultipartUploadParts", object_arn, context)]
        if "tagging" in params:
            return [Request("s3:GetObjectTagging", object_arn, context)]
        action = "s3:GetObjectVersion" if "versionId" in params else "s3:GetObject"
        found.append(Request(action, object_arn, context))
        if method == "GET" and kms and "attributes" not in params:
            found.append(_via_s3("kms:Decrypt", kms, where))
        return found
    if method in ("PUT", "POST"):
        if "tagging" in params:
            return [Request("s3:PutObjectTagging", object_arn, context)]
        found.append(Request("s3:PutObject", object_arn, context))
        source = headers.get("x-amz-copy-source")
        if source:
            source_bucket, _, source_key = unquote(source).lstrip("/").partition("/")
            source_key = source_key.split("?versionId=", 1)[0]
            found.append(Request("s3:GetObject", f"arn:aws:s3:::{source_bucket}/{source_key}", context))
            source_kms = _sse_kms_key(source_bucket, {}, where)
            if source_kms:
                found.append(_via_s3("kms:Decrypt", source_kms, where))
        if kms:
            found.append(_via_s3("kms:GenerateDataKey", kms, where))
            if "uploadId" in params or "uploads" in params:
                # Multipart uploads need Decrypt too (S3 User Guide, "Using SSE-KMS": multipart upload).
                found.append(_via_s3("kms:Decrypt", kms, where))
        return found
    if method == "DELETE":
        if "uploadId" in params:
            return [Request("s3:AbortMultipartUpload", object_arn, context)]
        if "tagging" in params:
            return [Request("s3:DeleteObjectTagging", object_arn, context)]
        return [Request("s3:DeleteObjectVersion" if "versionId" in params else "s3:DeleteObject", object_arn, context)]
    raise Unnamed(f"S3 {method} on {bucket}/{key}")


def _deleted_keys(body: bytes) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise Unnamed(f"S3 DeleteObjects body is not XML: {exc}") from None
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]


def _sse_kms_key(bucket: str, headers: dict[str, str], where: Where) -> str | None:
    if headers.get("x-amz-server-side-encryption") == "aws:kms":
        named = headers.get("x-amz-server-side-encryption-aws-kms-key-id")
        return where.key_ids.get(named, named) if named else where.kms_buckets.get(bucket)
    return where.kms_buckets.get(bucket)


def _via_s3(action: str, key_arn: str, where: Where) -> Request:
    return Request(action, key_arn, {"kms:ViaService": f"s3.{where.region}.amazonaws.com",
                                     "kms:CallerAccount": where.account, "aws:SecureTransport": "true"})


def json_requests(target: str, body: bytes, where: Where) -> list[Request]:
    prefix, _, operation = target.partition(".")
    service = _SERVICE_BY_TARGET.get(prefix)
    if service is None:
        raise Unnamed(f"X-Amz-Target {target}")
    try:
        payload: dict[str, Any] = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise Unnamed(f"{target} body is not JSON: {exc}") from None
    context = {"aws:SecureTransport": "true"}
    arn = f"arn:aws:{service}:{where.region}:{where.account}"
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            tables = payload.get("RequestItems", {})
            if operation == "BatchGetItem":
                return [Request("dynamodb:BatchGetItem", f"{arn}:table/{t}", context) for t in tables]
            return [Request("dynamodb:BatchWriteItem", f"{arn}:table/{t}", context) for t in tables]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
                     "Get": "GetItem"}
            return [Request(f"dynamodb:{kinds[kind]}", f"{arn}:table/{item[kind]['TableName']}", context)
                    for item in payload.get("TransactItems", []) for kind in item]
        if "TableName" not in payload:
            return [Request(f"dynamodb:{operation}", "*", context)]
        resource = f"{arn}:table/{payload['TableName']}"
        if payload.get("IndexName"):
            resource += f"/index/{payload['IndexName']}"
        return [Request(f"dynamodb:{operation}", resource, context)]
    if service == "sqs":
        queue = payload.get("QueueName") or str(payload.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
        return [Request(f"sqs:{operation}", f"{arn}:{queue}" if queue else "*", context)]
    if service == "logs":
        group = payload.get("logGroupName") or payload.get("logGroupIdentifier", "").rsplit(":log-group:", 1)[-1]
        if not group:  # DescribeLogGroups and the like: every log group (Service Authorization Reference)
            return [Request(f"logs:{operation}", f"{arn}:log-group:*", context)]
        stream = payload.get("logStreamName")
        resource = f"{arn}:log-group:{group}:" + (f"log-stream:{stream}" if stream else "*")
        return [Request(f"logs:{operation}", resource, context)]
    # KMS: the key the request names (id, ARN or alias), "*" for calls on no key.
    key = payload.get("KeyId") or payload.get("TargetKeyId")
    if operation == "CreateAlias" and payload.get("AliasName"):
        return [Request("kms:CreateAlias", f"{arn}:{payload['AliasName']}", context),
                Request("kms:CreateAlias", where.key_ids.get(key, key), context)]
    if not key:
        return [Request(f"kms:{operation}", "*", context)]
    return [Request(f"kms:{operation}", where.key_ids.get(key, key if key.startswith("arn:") else f"{arn}:key/{key}"),
                    context)]


def query_requests(host_service: str, body: bytes, query: str, where: Where | None = None) -> list[Request]:
    params = {k: v[-1] for k, v in parse_qs((query + "&" + body.decode("utf-8", "replace")).strip("&")).items()}
    action = params.get("Action")
    if not action:
        raise Unnamed(f"{host_service} query request without Action")
    context = {"aws:SecureTransport": "true"}
    if host_service == "sts":
        return [Request(f"sts:{action}", "*", context)]
    if host_service == "sns":
        topic = params.get("TopicArn", "*")
        found = [Request(f"sns:{action}", topic, context)]
        key = where.kms_topics.get(topic) if where is not None else None
        if action == "Publish" and key:
            # An encrypted topic's publisher needs the key itself (SNS Developer Guide, "Encryption at rest").
            via = {**context, "kms:ViaService": f"sns.{where.region}.amazonaws.com", "kms:CallerAccount": where.account}
            found += [Request("kms:GenerateDataKey", key, via), Request("kms:Decrypt", key, via)]
        return found
    raise Unnamed(f"{host_service} {action}")


_BATCH_OPERATIONS = {"submitjob": "SubmitJob", "describejobs": "DescribeJobs", "listjobs": "ListJobs",
                     "terminatejob": "TerminateJob", "canceljob": "CancelJob",
                     "describejobqueues": "DescribeJobQueues", "describejobdefinitions": "DescribeJobDefinitions",
                     "describecomputeenvironments": "DescribeComputeEnvironments",
                     "registerjobdefinition": "RegisterJobDefinition", "updatejobqueue": "UpdateJobQueue",
                     "updatecomputeenvironment": "UpdateComputeEnvironment",
                     "deregisterjobdefinition": "DeregisterJobDefinition", "tagresource": "TagResource"}


def batch_requests(path: str, body: dict[str, Any], where: Where,
                   job_tags: Callable[[str], dict[str, str]] = lambda job_id: {}) -> list[Request]:
    """Batch's resource-level permissions: SubmitJob on the job queue and the job definition (and
    TagResource with aws:RequestTag when it tags), RegisterJobDefinition on the definition (and
    iam:PassRole for its roles); the rest on what they name or on "*"."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    operation = _BATCH_OPERATIONS.get(name)
    if operation is None:
        raise Unnamed(f"Batch operation {path}")
    arn = f"arn:aws:batch:{where.region}:{where.account}"
    context = {"aws:SecureTransport": "true"}

    def named(kind: str, value: str) -> str:
        return value if value.startswith("arn:") else f"{arn}:{kind}/{value}"

    if operation == "SubmitJob":
        definition = body.get("jobDefinition", "")
        tags = body.get("tags") or {}
        # SubmitJob itself takes aws:RequestTag/aws:TagKeys (Batch's service authorization reference),
        # so a policy may allow it only for jobs tagged with its lab.
        tagged = {**context, **{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)} \
            if tags else context
        found = [Request("batch:SubmitJob", named("job-queue", body.get("jobQueue", "")), tagged),
                 Request("batch:SubmitJob", named("job-definition", definition), tagged)]
        if tags:
            found.append(Request("batch:TagResource", f"{arn}:job/*", tagged))
        return found
    if operation == "RegisterJobDefinition":
        found = [Request("batch:RegisterJobDefinition", named("job-definition", body.get("jobDefinitionName", "")),
                         context)]
        container = body.get("containerProperties") or {}
        for role in (container.get("jobRoleArn"), container.get("executionRoleArn")):
            if role:
                found.append(Request("iam:PassRole", role, {**context, "iam:PassedToService": "ecs-tasks.amazonaws.com"}))
        tags = body.get("tags") or {}
        if tags:
            found.append(Request("batch:TagResource", named("job-definition", body.get("jobDefinitionName", "")), {
                **context, **{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}))
        return found
    if operation in ("TerminateJob", "CancelJob"):
        # The job's own tags are its aws:ResourceTag keys (the API may stop only its lab's jobs).
        job_id = str(body.get("jobId", ""))
        tags = {f"aws:ResourceTag/{k}": v for k, v in job_tags(job_id).items()}
        return [Request(f"batch:{operation}", f"{arn}:job/{job_id}", {**context, **tags})]
    if operation == "UpdateJobQueue":
        return [Request("batch:UpdateJobQueue", named("job-queue", body.get("jobQueue", "")), context)]
    if operation == "UpdateComputeEnvironment":
        return [Request("batch:UpdateComputeEnvironment",
                        named("compute-environment", body.get("computeEnvironment", "")), context)]
    return [Request(f"batch:{operation}", "*", context)]


def service_of(environ: dict[str, Any]) -> str | None:
    """The service a request to the emulator is for, from its SigV4 credential scope."""
    match = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None
