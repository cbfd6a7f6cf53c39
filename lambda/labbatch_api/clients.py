"""The AWS clients the API handler uses, built once per container.

Endpoints come from the environment (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>), which
botocore reads itself: the same code talks to AWS or to a local emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

# "standard" retries throttling and transient errors with jittered exponential backoff.
# Four attempts keep the worst-case back-off (about 1 + 2 + 4 s) well inside API Gateway's
# 29 s integration timeout, even when a request makes several calls.
MAX_ATTEMPTS = 4
# HEADs of a request's inputs run in parallel (admission.py); give each thread a connection.
S3_POOL_CONNECTIONS = 32


def client_config(**extra: Any) -> Config:
    return Config(
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        connect_timeout=3,
        read_timeout=10,
        **extra,
    )


@dataclass(frozen=True)
class ApiClients:
    s3: Any
    batch: Any
    dynamodb: Any


def build_clients() -> ApiClients:
    return ApiClients(
        s3=boto3.client("s3", config=client_config(max_pool_connections=S3_POOL_CONNECTIONS)),
        batch=boto3.client("batch", config=client_config()),
        dynamodb=boto3.client("dynamodb", config=client_config()),
    )
