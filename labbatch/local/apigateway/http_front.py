"""The HTTP side of the local API Gateway: a threading server on loopback, the request handler
that hands each request to the gateway, and what API Gateway answers before any integration
runs: the body's declared length against the payload limit (411, 400, 413), refusals in the
API's one error shape, and the lingering close that keeps a refused client's answer readable.

It knows nothing of SigV4, tokens or Lambda: gateway.py serves each request through `Front`.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

# A client that stops sending mid-request must not hold a server thread for ever.
SOCKET_TIMEOUT_SECONDS = 60
# How long, and how much, a refused request's unread body is drained after the answer.
LINGER_SECONDS = 5.0
LINGER_MAX_BYTES = 64 << 20


class Front(Protocol):
    """What the server calls for each request (LocalApiGateway)."""

    def serve(self, http: ProxyRequestHandler) -> None: ...

    def refuse_early(self, http: ProxyRequestHandler) -> bool: ...

    def log(self, line: str) -> None: ...


class Refusal(Exception):
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


class ClientGone(Exception):
    pass


class GatewayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: more engines' pollers than that, each opening a new
    # connection (py-tes does), overflowed it and waited a second for the client's SYN retry.
    request_queue_size = 128
    gateway: Front

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


class ProxyRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it, Nagle's algorithm and the client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server_version = "LabBatchLocalApiGateway"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS
    server: GatewayHTTPServer

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


def split_target(target: str) -> tuple[str, str]:
    if not target.startswith("/"):  # absolute-form, as sent through a proxy
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    raw_path, _, raw_query = target.partition("?")
    return raw_path, raw_query


def declared_length(http: BaseHTTPRequestHandler, limit: int) -> int:
    if http.headers.get("Transfer-Encoding") is not None:
        # Without a length the quota cannot be checked before reading; API Gateway's clients
        # (the AWS SDKs, botocore) always send one.
        raise Refusal(411, "length_required", "Send the body with a Content-Length header; "
                      "chunked transfer encoding is not accepted.", close=True)
    declared = http.headers.get_all("Content-Length") or []
    if not declared:
        return 0
    if len(set(declared)) != 1 or not declared[0].strip().isdigit():
        raise Refusal(400, "bad_request", "Content-Length must be one whole number of bytes.", close=True)
    length = int(declared[0])
    if length > limit:
        raise Refusal(413, "payload_too_large",
                      f"The request body is {length} bytes; the API accepts at most {limit} bytes.",
                      close=True, limit_bytes=limit, received_bytes=length)
    return length


def read_body(http: BaseHTTPRequestHandler, limit: int) -> bytes:
    length = declared_length(http, limit)
    if length == 0:
        return b""
    body = http.rfile.read(length)
    if len(body) < length:
        raise ClientGone()
    return body


def write(http: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes,
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


def write_refusal(http: BaseHTTPRequestHandler, refusal: Refusal) -> int:
    body = {"error": {"code": refusal.code, "message": refusal.message, "details": refusal.details}}
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    write(http, refusal.status, headers, json.dumps(body).encode(), close=refusal.close)
    if refusal.close:
        _linger(http)  # the body was never read: see _linger
    return refusal.status


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
