"""Sorting AWS failures into "try again later" and "something is wrong".

Clients retry throttling and transient errors themselves (retry mode "standard", see
clients.py); an exception that reaches this module has spent those retries. Throttling
and transient failures then become 503 + Retry-After; anything else is a fault of ours.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

# The codes botocore's standard retry mode treats as throttling (botocore/retries/standard.py).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalServerError", "ServerException"})


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def attempts_made(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        return exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
    return None


def is_throttling(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in THROTTLING_CODES


def is_retryable(exc: BaseException) -> bool:
    """Worth retrying later: throttled, AWS-side 5xx, or the network let us down."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in THROTTLING_CODES | TRANSIENT_CODES or status >= 500
    return isinstance(exc, BotoCoreError) and isinstance(
        exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
    )


def request_may_have_landed(exc: BaseException) -> bool:
    """False only when AWS certainly did not act on the request.

    A throttled or 4xx-refused call did nothing, and neither did one that never connected.
    A 5xx or a connection lost mid-request may have been acted on.
    """
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return not is_throttling(exc) and status >= 500
    return not isinstance(exc, (EndpointConnectionError, ConnectTimeoutError))
