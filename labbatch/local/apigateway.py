"""API Gateway's REST API in front of a Lambda handler, on loopback, for local mode.

Each request goes through what API Gateway does before and after a Lambda proxy
integration: IAM (SigV4) authorization against the local credentials, a payload limit
(the API's own, labbatch/api_limits.py), the version 1.0 proxy event with the caller's identity in `requestContext.identity`,
and the proxy response turned back into HTTP (502 when the handler fails). The handler
cannot tell it from the real thing, which is the point: local mode runs the deployed code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from labbatch.api_limits import MAX_BODY_BYTES
from labbatch_contract import tokens
from labbatch.local.signing import ReceivedRequest, SignatureRejected, SigV4Verifier

# What the API takes (labbatch/api_limits.py): the front refuses a larger body before reading
# it, with 413 as API Gateway does over its own (larger) quota.
MAX_PAYLOAD_BYTES = MAX_BODY_BYTES
# API Gateway gives a Lambda integration at most 29 s by default; the handler sees it as its
# remaining time, as the deployed one does through its own timeout.
INTEGRATION_TIMEOUT_SECONDS = 29
# The deployed API may declare its routes one by one; locally every path reaches the
# handler's own router, as through a greedy proxy resource.
PROXY_RESOURCE = "/{proxy+}"
# A client that stops sending mid-request must not hold a server thread for ever.
SOCKET_TIMEOUT_SECONDS = 60
# Hop-by-hop and framing headers are the server's to write, whatever the handler returns.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# API Gateway's own body when the integration fails; nothing of the failure reaches the caller.
_INTERNAL_SERVER_ERROR = b'{"message": "Internal server error"}'

Handler = Callable[[dict[str, Any], Any], Any]
# A token (or None) -> (its ledger record, "ok") or (None, why not): labbatch_contract.tokens.check.
TokenCheck = Callable[[str | None], tuple[Any, str]]
# (method, path) -> None when the signer may invoke it, else why not (AccessDenied's message).
InvokeCheck = Callable[[str, str], str | None]


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


class _Refusal(Exception):
    """A request API Gateway answers itself, without calling the integration."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False, **details: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        # A refusal sent before the body was read must end the connection: the unread body
        # would otherwise be parsed as the next request.
        self.close = close


class _ClientGone(Exception):
    pass


class LocalApiGateway:
    """Serves `handler` as API Gateway would, on http://host:port, until stop()."""

    def __init__(
        self,
        handler: Handler,
        *,
        region: str,
        credentials: tuple[str, str],
        caller_arn: str,
        account_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "local",
        api_id: str = "localapigw",
        function_name: str = "labbatch-api",
        memory_limit_in_mb: int = 512,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        log: TextIO | None = None,
        token_check: TokenCheck | None = None,
        invoke_check: InvokeCheck | None = None,
    ):
        access_key_id, secret_access_key = credentials
        self._handler = handler
        # With TES on, /ga4gh/... is the deployed API's token subtree (a Lambda authorizer, no SigV4):
        # the same check, from labbatch_contract.tokens, runs here.
        self._token_check = token_check
        # Strict IAM: execute-api:Invoke for the signer, by its policies and the API's resource policy.
        self._invoke_check = invoke_check
        self._verifier = SigV4Verifier(access_key_id=access_key_id, secret_access_key=secret_access_key, region=region)
        self.region = region
        self.caller_arn = caller_arn
        self.account_id = account_id
        self.stage = stage
        self.api_id = api_id
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.max_payload_bytes = max_payload_bytes
        self._host = host
        self._port = port
        self._log_stream = log
        self._caller_id = _principal_id(caller_arn)
        # One Lambda execution environment gets one event at a time; Powertools' resolver
        # keeps the current event on the module-level app, so concurrent calls would mix them.
        self._invoke_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._server: _GatewayHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalApiGateway:
        if self._server is not None:
            raise RuntimeError("the gateway is already started")
        server = _GatewayHTTPServer((self._host, self._port), _ProxyRequestHandler)
        server.gateway = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-api-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> LocalApiGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------

    def serve(self, http: _ProxyRequestHandler) -> None:
        started = time.monotonic()
        raw_path, raw_query = _split_target(http.path)
        try:
            status = self._respond(http, raw_path, raw_query)
        except (_ClientGone, ConnectionError, TimeoutError):
            http.close_connection = True
            status = 499  # nginx's word for "the client closed the request"; nothing was sent
        self._log_request(http.command, raw_path, status, started)

    def refuse_early(self, http: _ProxyRequestHandler) -> bool:
        """Answers `Expect: 100-continue` with the refusal when the body would be refused anyway."""
        started = time.monotonic()
        try:
            _declared_length(http, self.max_payload_bytes)
        except _Refusal as refusal:
            self._write_refusal(http, refusal)
            self._log_request(http.command, _split_target(http.path)[0], refusal.status, started)
            return True
        return False

    def _log_request(self, method: str, raw_path: str, status: int, started: float) -> None:
        self.log(f"api {method} {unquote(raw_path)} {status} {(time.monotonic() - started) * 1000:.1f}ms")

    def _respond(self, http: _ProxyRequestHandler, raw_path: str, raw_query: str) -> int:
        try:
            body = _read_body(http, self.max_payload_bytes)
            request = ReceivedRequest(http.command, raw_path, raw_query, list(http.headers.items()), body)
            authorizer = None
            if self._token_check is not None and tokens.is_tes_path(unquote(raw_path)):
                authorizer = self._authorize(request.header("Authorization"))
                access_key = None
            else:
                access_key = self._verifier.verify(request)
                why_not = self._invoke_check(http.command, unquote(raw_path)) if self._invoke_check else None
                if why_not is not None:
                    raise _Refusal(403, "forbidden", why_not)
        except _Refusal as refusal:
            return self._write_refusal(http, refusal)
        except SignatureRejected as rejected:
            # In AWS, IAM authorization answers 403 {"message": ...}; LabBatch keeps its API's one
            # error shape here too, so clients parse a single kind of error body.
            return self._write_refusal(http, _Refusal(403, "forbidden", rejected.message, **rejected.details))

        request_id = str(uuid.uuid4())
        event = self._event(request, http, access_key, request_id, authorizer)
        context = LocalLambdaContext(
            function_name=self.function_name,
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}",
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{self.function_name}",
            memory_limit_in_mb=self.memory_limit_in_mb,
            deadline=time.monotonic() + INTEGRATION_TIMEOUT_SECONDS,
        )
        try:
            with self._invoke_lock:
                result = self._handler(event, context)
            status, headers, payload = _http_response(result)
        except Exception:
            # The traceback is the operator's, in the server log; the caller learns only what
            # API Gateway would tell it.
            self.log(f"api handler failed for {http.command} {unquote(raw_path)} (request {request_id}):\n"
                     + traceback.format_exc().rstrip())
            status, headers, payload = 502, [("Content-Type", "application/json")], _INTERNAL_SERVER_ERROR
        headers.append(("x-amzn-RequestId", request_id))
        _write(http, status, headers, payload)
        return status

    def _authorize(self, header: str | None) -> dict[str, Any]:
        """API Gateway's answers for a REQUEST authorizer: 401 without the identity source (the
        Authorization header), 403 when the authorizer denies."""
        if not header:
            raise _Refusal(401, "unauthorized", "Send a LabBatch token: Authorization: Bearer <token> "
                           "(or Basic with the token as password); `labbatch token create` makes one")
        record, why = self._token_check(tokens.from_authorization(header))
        if record is None:
            raise _Refusal(403, "forbidden", f"The token is not accepted ({why}): `labbatch token list` shows the "
                           "lab's tokens; create a new one with `labbatch token create`")
        owner = str(record["owner"])
        return {"principalId": owner, tokens.CONTEXT_OWNER: owner,
                tokens.CONTEXT_TOKEN_ID: str(record["token_id"]), "integrationLatency": 0}

    def _event(self, request: ReceivedRequest, http: _ProxyRequestHandler, access_key: str | None, request_id: str,
               authorizer: dict[str, Any] | None = None) -> dict:
        now = datetime.now(UTC)
        source_ip = http.client_address[0]
        path = unquote(request.raw_path) or "/"
        headers, multi_headers = _headers_of(request.headers)
        forwarded = {"X-Forwarded-For": source_ip, "X-Forwarded-Port": str(http.server.server_address[1]),
                     "X-Forwarded-Proto": "http"}
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
                "accountId": self.account_id,
                "apiId": self.api_id,
                "domainName": request.header("Host") or "",
                "domainPrefix": (request.header("Host") or "").split(".")[0].split(":")[0],
                "extendedRequestId": request_id,
                "httpMethod": request.method,
                "identity": self._identity(request, source_ip, access_key, signed=authorizer is None),
                **({"authorizer": authorizer} if authorizer is not None else {}),
                # API Gateway's requestContext.path carries the stage; the event's path does not.
                "path": f"/{self.stage}{path}",
                "protocol": http.request_version,
                "requestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "resourceId": "proxy",
                "resourcePath": PROXY_RESOURCE,
                "stage": self.stage,
            },
            **_event_body(request.body),
        }

    def _identity(self, request: ReceivedRequest, source_ip: str, access_key: str | None, *, signed: bool) -> dict:
        # A token-authorized request carries no IAM identity, as behind API Gateway's custom authorizer.
        return {
            "accessKey": access_key,
            "accountId": self.account_id if signed else None,
            "caller": self._caller_id if signed else None,
            "user": self._caller_id if signed else None,
            "userArn": self.caller_arn if signed else None,
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

    def _write_refusal(self, http: _ProxyRequestHandler, refusal: _Refusal) -> int:
        body = {"error": {"code": refusal.code, "message": refusal.message, "details": refusal.details}}
        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
        _write(http, refusal.status, headers, json.dumps(body).encode(), close=refusal.close)
        if refusal.close:
            _linger(http)  # the body was never read: see _linger
        return refusal.status

    def log(self, line: str) -> None:
        stream = self._log_stream or sys.stderr
        with self._log_lock:
            stream.write(line + "\n")
            stream.flush()


class _GatewayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: more engines' pollers than that, each opening a new
    # connection (py-tes does), overflowed it and waited a second for the client's SYN retry.
    request_queue_size = 128
    gateway: LocalApiGateway

    def __init__(self, *args: Any, **kwargs: Any):
        self._open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS query that can take seconds
        # on a machine with no network; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        # Kept-alive connections would otherwise go on being served after stop().
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ProxyRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it, Nagle's algorithm and the client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server_version = "LabBatchLocalApiGateway"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS
    server: _GatewayHTTPServer

    def _serve(self) -> None:
        self.server.gateway.serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def handle_expect_100(self) -> bool:
        if self.server.gateway.refuse_early(self):
            return False
        return super().handle_expect_100()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # the gateway writes its own line per request, with the time it took

    def log_message(self, format: str, *args: Any) -> None:
        self.server.gateway.log("api " + (format % args))


def _split_target(target: str) -> tuple[str, str]:
    if not target.startswith("/"):  # absolute-form, as sent through a proxy
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    raw_path, _, raw_query = target.partition("?")
    return raw_path, raw_query


def _declared_length(http: BaseHTTPRequestHandler, limit: int) -> int:
    if http.headers.get("Transfer-Encoding") is not None:
        # Without a length the quota cannot be checked before reading; API Gateway's clients
        # (the AWS SDKs, botocore) always send one.
        raise _Refusal(411, "length_required", "Send the body with a Content-Length header; "
                       "chunked transfer encoding is not accepted.", close=True)
    declared = http.headers.get_all("Content-Length") or []
    if not declared:
        return 0
    if len(set(declared)) != 1 or not declared[0].strip().isdigit():
        raise _Refusal(400, "bad_request", "Content-Length must be one whole number of bytes.", close=True)
    length = int(declared[0])
    if length > limit:
        raise _Refusal(413, "payload_too_large",
                       f"The request body is {length} bytes; the API accepts at most {limit} bytes.",
                       close=True, limit_bytes=limit, received_bytes=length)
    return length


def _read_body(http: BaseHTTPRequestHandler, limit: int) -> bytes:
    length = _declared_length(http, limit)
    if length == 0:
        return b""
    body = http.rfile.read(length)
    if len(body) < length:
        raise _ClientGone()
    return body


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


def _http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
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


def _write(http: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes,
           *, close: bool = False) -> None:
    http.send_response(status)
    for name, value in headers:
        http.send_header(name, value)
    http.send_header("Content-Length", str(len(body)))
    if close:
        http.send_header("Connection", "close")
        http.close_connection = True
    http.end_headers()
    if http.command != "HEAD":
        http.wfile.write(body)
    http.wfile.flush()


# How long, and how much, a refused request's unread body is drained after the answer.
LINGER_SECONDS = 5.0
LINGER_MAX_BYTES = 64 << 20


def _linger(http: BaseHTTPRequestHandler) -> None:
    """A lingering close, as web servers do: half-close, then read and drop what the client still
    sends. Closing a socket with unread data in it makes the kernel reset the connection, and a
    client still sending its body (a 7 MB POST refused with 413 after its first bytes) then gets
    "connection reset" instead of reading the answer; API Gateway's 413 is readable."""
    connection = http.connection
    try:
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_MAX_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            connection.settimeout(remaining)
            chunk = connection.recv(1 << 16)
            if not chunk:
                break  # the client read the answer and closed
            drained += len(chunk)
    except OSError:
        pass  # gone already: nothing left to protect


def _principal_id(arn: str) -> str:
    """A stable stand-in for IAM's unique id of the caller (AIDA… for users, AROA…:session for roles)."""
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()[:17]
    resource = arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        session = resource.rsplit("/", 1)[-1]
        return f"AROA{digest}:{session}"
    return f"AIDA{digest}"
