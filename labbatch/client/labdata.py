"""Reaching a lab's own S3 buckets, log group and Batch jobs from the client, in AWS or locally.

The job API never moves data: `labbatch upload`, `results`, `logs` and `submit` with local paths
talk to S3, CloudWatch Logs and (for an array child's log streams) Batch directly, with

- a running local lab's own endpoint and credentials (its state file, as `resolve_connection`
  finds it), or
- the caller's AWS credentials (`--profile`) in the lab's Region, for a deployed lab.

Bucket names and the log group come from the local lab's state file, or from `GET /lab`, which
answers with the names the lab's stacks gave (labbatch_contract.names).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from labbatch.client.command_base import connection_of
from labbatch.client.sdk import Connection, LabBatchClient, LabBatchError, local_lab_state
from labbatch_contract import names


@dataclass
class LabData:
    """One lab's API connection plus AWS clients for its data."""

    connection: Connection
    local: dict[str, Any] | None
    profile: str | None
    _lab_view: dict[str, Any] | None = field(default=None, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LabData:
        connection = connection_of(args)
        local = local_lab_state(connection.endpoint)
        return cls(connection, local, args.profile)

    def api(self, **kwargs: Any) -> LabBatchClient:
        return self.connection.client(**kwargs)

    # -- where things are ---------------------------------------------------------------------

    def lab_view(self) -> dict[str, Any]:
        if self._lab_view is None:
            with self.api() as client:
                self._lab_view = client.lab()
        return self._lab_view

    def buckets(self) -> dict[str, str]:
        if self.local is not None and isinstance(self.local.get("buckets"), dict):
            return self.local["buckets"]
        buckets = self.lab_view().get("buckets")
        if not isinstance(buckets, dict) or "inputs" not in buckets:
            raise LabBatchError("no_buckets", f"{self.connection.endpoint} did not name the lab's buckets in GET /lab "
                                "(an older LabBatch API: redeploy the lab's API stack)")
        return buckets

    def log_group(self, pipeline: str | None = None) -> str:
        if self.local is not None and self.local.get("log_group"):
            return self.local["log_group"]
        view = self.lab_view()
        group = next((p.get("log_group") for p in view.get("pipelines", [])
                      if p.get("name") == pipeline and p.get("log_group")), None)
        return group or names.job_log_group(view["lab"])

    # -- AWS clients ------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._make_client(service)
        return self._clients[service]

    def _make_client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=32)
        if self.local is not None:
            keys = self.local["credentials"]
            endpoint = self.local.get("batch_endpoint") if service == "batch" else self.local["aws_endpoint"]
            return boto3.client(service, endpoint_url=endpoint, region_name=self.local.get("region") or "us-east-1",
                                aws_access_key_id=keys["access_key_id"],
                                aws_secret_access_key=keys["secret_access_key"], config=config)
        if self._session is None:
            from botocore.exceptions import BotoCoreError

            try:
                self._session = boto3.Session(profile_name=self.profile, region_name=self.connection.region)
            except BotoCoreError as error:
                raise LabBatchError("bad_profile", str(error)) from None
        return self._session.client(service, config=config)


def aws_reason(error: BaseException) -> str:
    """`Code: message` of a botocore ClientError, else the error's own words."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        detail = response["Error"]
        return f"{detail.get('Code')}: {detail.get('Message') or 'no message'}"
    return str(error) or type(error).__name__


def aws_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or "") or None
    return None


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key
