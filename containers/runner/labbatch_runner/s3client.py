"""One S3 client configuration for the runner, and what the s5cmd subprocess must be told."""

from __future__ import annotations

import os
from typing import Any

# Transient S3 errors (500/503 SlowDown, throttling, connection resets) are retried by
# botocore's standard mode with backoff; ten attempts ride out a typical S3 brown-out.
MAX_ATTEMPTS = 10
MAX_POOL_CONNECTIONS = 64


def make_s3_client() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        connect_timeout=10,
        read_timeout=120,
    )
    return boto3.session.Session().client("s3", config=config)


def explicit_endpoint(s3: Any) -> str | None:
    """The endpoint to hand to tools that do not read AWS_ENDPOINT_URL* themselves (s5cmd).

    Only when one was configured through the environment: in AWS, s5cmd finds the bucket's
    regional endpoint on its own, and passing boto3's guess would pin the wrong Region.
    """
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        return s3.meta.endpoint_url
    return None


def describe_client_error(exc: Any) -> str:
    """`not found (404)` rather than botocore's paragraph, so that errors stay one line."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.get("Code", ""))
    if status == 404 or code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
        return "not found (404)"
    if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
        return "access denied (403)"
    message = error.get("Message") or code or "unknown error"
    return f"{message} ({status or code})"
