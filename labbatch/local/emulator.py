"""The AWS emulator of local mode: moto on loopback, holding what the lab's stacks would create.

Buckets, the ledger table and the job log group get exactly the names the constructs give them
(labbatch_contract.names), so the handler and the runner cannot tell this lab from a deployed one.

DynamoDB requests are served one at a time. moto applies an UpdateItem to the stored item in
place, one attribute after another, and its server answers each request on its own thread: a
GetItem landing half-way through saw a job `FAILED` whose `failure` was not written yet, and two
conditional writes could both pass their condition. DynamoDB makes each item write atomic, and
the ledger's monotonic updates rely on it; the lock gives local mode the same guarantee.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from labbatch.local.iam.enforce import Authorizer, EnforcingApp
from labbatch_contract import ledger as ledger_schema
from labbatch_contract import names
from labbatch.lab.config import Lab

# moto's default account; any 12 digits would do, this one keeps moto's ARNs consistent.
LOCAL_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DATA_BUCKETS = ("inputs", "references", "results")


@dataclass(frozen=True)
class EmulatedLab:
    endpoint: str
    region: str
    account: str
    buckets: dict[str, str]
    table: str
    log_group: str
    alert_topic_arn: str
    key_arn: str | None = None  # the lab's customer-managed key, for `encryption: kms`


class SerialDynamoDB:
    """WSGI middleware: DynamoDB requests (X-Amz-Target `DynamoDB_...`) run one at a time, body
    and all; every other service's requests run concurrently as before."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            answer = self._app(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()


class _SerialDynamoDBServer(ThreadedMotoServer):
    authorizer: Authorizer | None = None

    def _server_entry(self) -> None:  # as moto's, with the middleware around its app
        # Strict IAM (labbatch.local.iam) in front of everything, once the lab's principals exist.
        app = EnforcingApp(SerialDynamoDB(DomainDispatcherApplication(create_backend_app)), lambda: self.authorizer)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class Emulator:
    """Starts moto in-process and creates the lab's stateful resources in it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _SerialDynamoDBServer(ip_address=host, port=port, verbose=False)
        self._host = host
        self.endpoint = ""

    def start(self) -> str:
        # moto's HTTP server logs every request; local mode logs API requests itself.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        _, port = self._server.get_host_and_port()
        self.endpoint = f"http://{self._host}:{port}"
        return self.endpoint

    def stop(self) -> None:
        self._server.stop()

    def enforce(self, authorizer: Authorizer) -> None:
        """From now on every request is checked against the lab's policies (labbatch.local.iam)."""
        self._server.authorizer = authorizer

    def client(self, service: str, region: str, credentials: tuple[str, ...]):
        """`credentials`: access key id, secret and optionally a session token."""
        session = boto3.session.Session(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                                        aws_session_token=credentials[2] if len(credentials) > 2 else None,
                                        region_name=region)
        return session.client(service, endpoint_url=self.endpoint, region_name=region)

    def create_lab(self, lab: Lab, *, credentials: tuple[str, str]) -> EmulatedLab:
        region = lab.region or DEFAULT_REGION
        key_arn = self._create_key(lab, region, credentials) if lab.encryption == "kms" else None
        buckets = {kind: names.bucket(lab.name, kind, LOCAL_ACCOUNT, region) for kind in DATA_BUCKETS}
        s3 = self.client("s3", region, credentials)
        for bucket in buckets.values():
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            if key_arn:
                # As the storage construct does: SSE-KMS with the lab's key and an S3 Bucket Key.
                s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True}]})

        table = names.ledger_table(lab.name)
        dynamodb = self.client("dynamodb", region, credentials)
        dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": ledger_schema.PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": ledger_schema.BY_CREATED_PARTITION, "AttributeType": "S"},
                {"AttributeName": ledger_schema.BY_CREATED_SORT, "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": ledger_schema.PARTITION_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{
                "IndexName": ledger_schema.BY_CREATED_INDEX,
                "KeySchema": [{"AttributeName": ledger_schema.BY_CREATED_PARTITION, "KeyType": "HASH"},
                              {"AttributeName": ledger_schema.BY_CREATED_SORT, "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
            **({"SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}} if key_arn else {}),
        )
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ledger_schema.TTL_ATTRIBUTE})

        log_group = names.job_log_group(lab.name)
        logs = self.client("logs", region, credentials)
        logs.create_log_group(logGroupName=log_group, **({"kmsKeyId": key_arn} if key_arn else {}))
        logs.put_retention_policy(logGroupName=log_group, retentionInDays=lab.log_retention_days)
        topic = self.client("sns", region, credentials).create_topic(
            Name=names.alert_topic(lab.name), Attributes={"KmsMasterKeyId": key_arn} if key_arn else {})
        return EmulatedLab(endpoint=self.endpoint, region=region, account=LOCAL_ACCOUNT, buckets=buckets,
                           table=table, log_group=log_group, alert_topic_arn=topic["TopicArn"], key_arn=key_arn)

    def _create_key(self, lab: Lab, region: str, credentials: tuple[str, str]) -> str:
        """The lab's key, as the lab-key construct makes it: symmetric, rotated, under the lab's alias.
        moto does not evaluate key policies; strict IAM (labbatch.local.iam) checks the synthesized one."""
        kms = self.client("kms", region, credentials)
        key = kms.create_key(Description=f"LabBatch {lab.name} (local)", KeyUsage="ENCRYPT_DECRYPT",
                             KeySpec="SYMMETRIC_DEFAULT", Tags=[{"TagKey": names.LAB_TAG, "TagValue": lab.name}])
        key_id = key["KeyMetadata"]["KeyId"]
        kms.enable_key_rotation(KeyId=key_id)
        kms.create_alias(AliasName=names.kms_alias(lab.name), TargetKeyId=key_id)
        return key["KeyMetadata"]["Arn"]
