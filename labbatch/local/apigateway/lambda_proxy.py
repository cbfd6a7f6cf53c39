"""API Gateway's Lambda proxy integration (payload version 1.0), both ways: the event a request
becomes, with the caller's identity in `requestContext.identity` (or an authorizer's context),
the context object the handler is called with, and the proxy response turned back into HTTP.

Pure shapes, no sockets: the handler must not be able to tell them from the real ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from labbatch.local.signing import ReceivedRequest

# API Gateway gives a Lambda integration at most 29 s by default; the handler sees it as its
# remaining time, as the deployed one does through its own timeout.
INTEGRATION_TIMEOUT_SECONDS = 29
# The deployed API may declare its routes one by one; locally every path reaches the
# handler's own router, as through a greedy proxy resource.
PROXY_RESOURCE = "/{proxy+}"
# Hop-by-hop and framing headers are the server's to write, whatever the handler returns.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# API Gateway's own body when the integration fails; nothing of the failure reaches the caller.
INTERNAL_SERVER_ERROR = b'{"message": "Internal server error"}'


@dataclass
class LocalLambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    log_group_name: str
    memory_limit_in_mb: int
    deadline: float  # time.monotonic() when the integration would time out
    function_version: str = "$LATEST"
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def proxy_event(request: ReceivedRequest, *, source_ip: str, server_port: int, protocol: str,
                access_key: str | None, request_id: str, authorizer: dict[str, Any] | None,
                account_id: str, api_id: str, stage: str, caller_arn: str, caller_id: str) -> dict:
    """The event for `request`: signed by `access_key` (the caller `caller_arn`, IAM's unique id
    `caller_id`: principal_id) or, when an `authorizer` context is given, token-authorized."""
    now = datetime.now(UTC)
    path = unquote(request.raw_path) or "/"
    headers, multi_headers = _headers_of(request.headers)
    forwarded = {"X-Forwarded-For": source_ip, "X-Forwarded-Port": str(server_port), "X-Forwarded-Proto": "http"}
    for name, value in forwarded.items():
        headers.setdefault(name, value)
        multi_headers.setdefault(name, [value])
    query, multi_query = _query_of(request.raw_query)
    return {
        "resource": PROXY_RESOURCE,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path.strip("/") else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": request.header("Host") or "",
            "domainPrefix": (request.header("Host") or "").split(".")[0].split(":")[0],
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": _identity(request, source_ip, access_key, account_id=account_id, caller_arn=caller_arn,
                                  caller_id=caller_id, signed=authorizer is None),
            **({"authorizer": authorizer} if authorizer is not None else {}),
            # API Gateway's requestContext.path carries the stage; the event's path does not.
            "path": f"/{stage}{path}",
            "protocol": protocol,
            "requestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "resourceId": "proxy",
            "resourcePath": PROXY_RESOURCE,
            "stage": stage,
        },
        **_event_body(request.body),
    }


def _identity(request: ReceivedRequest, source_ip: str, access_key: str | None, *, account_id: str,
              caller_arn: str, caller_id: str, signed: bool) -> dict:
    # A token-authorized request carries no IAM identity, as behind API Gateway's custom authorizer.
    return {
        "accessKey": access_key,
        "accountId": account_id if signed else None,
        "caller": caller_id if signed else None,
        "user": caller_id if signed else None,
        "userArn": caller_arn if signed else None,
        "sourceIp": source_ip,
        "userAgent": request.header("User-Agent"),
        "apiKey": None,
        "apiKeyId": None,
        "clientCert": None,
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
        "principalOrgId": None,
    }


def principal_id(arn: str) -> str:
    """A stable stand-in for IAM's unique id of the caller (AIDA… for users, AROA…:session for roles)."""
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()[:17]
    resource = arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        session = resource.rsplit("/", 1)[-1]
        return f"AROA{digest}:{session}"
    return f"AIDA{digest}"


def _headers_of(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """API Gateway's two views of the headers: the last value of each, and all of them."""
    spelling: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        # Whitespace around a field value is not part of it (RFC 9110); the parser keeps the trailing kind.
        multi.setdefault(key, []).append(value.strip())
    return {name: values[-1] for name, values in multi.items()}, multi


def _query_of(raw_query: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    multi: dict[str, list[str]] = {}
    for part in raw_query.split("&") if raw_query else []:
        key, _, value = part.partition("=")
        if key:
            multi.setdefault(unquote(key), []).append(unquote(value))
    return {key: values[-1] for key, values in multi.items()}, multi


def _event_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {"body": None, "isBase64Encoded": False}
    try:
        return {"body": body.decode("utf-8"), "isBase64Encoded": False}
    except UnicodeDecodeError:
        # API Gateway hands binary payloads over base64-encoded; the handler decides what to do.
        return {"body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy response as HTTP; a malformed one fails as in API Gateway (502)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise ValueError(f"malformed Lambda proxy response: {str(result)[:200]!r}")
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    # API Gateway merges both maps; for a name in both, multiValueHeaders wins.
    merged = {name: [value] for name, value in single.items()}
    merged.update({name: list(values) for name, values in multi.items()})
    headers = [(str(name), str(value)) for name, values in merged.items() for value in values
               if str(name).lower() not in _FRAMING_HEADERS]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise ValueError(f"malformed Lambda proxy response: body is {type(body).__name__}, not a string")
    if result.get("isBase64Encoded"):
        try:
            return result["statusCode"], headers, base64.b64decode(body, validate=True)
        except binascii.Error as error:
            raise ValueError(f"malformed Lambda proxy response: body is not base64 ({error})") from None
    return result["statusCode"], headers, body.encode("utf-8")
