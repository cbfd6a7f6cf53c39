"""API Gateway's REST API in front of a Lambda handler, on loopback, for local mode.

Each request goes through what API Gateway does before and after a Lambda proxy
integration: a payload limit (the API's own, labbatch/lab/api_limits.py) and IAM (SigV4) or token
authorization (authorization.py), the version 1.0 proxy event (lambda_proxy.py), one call of the
handler at a time, and the proxy response turned back into HTTP (502 when the handler fails).
The handler cannot tell it from the real thing, which is the point: local mode runs the deployed
code. This module is the gateway itself: its life cycle and the path of one request through those
steps; the HTTP server it serves on is http_front.py.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import unquote

from labbatch.lab.api_limits import MAX_BODY_BYTES
from labbatch.local.apigateway.authorization import Authorization, InvokeCheck, TokenCheck
from labbatch.local.apigateway.http_front import (ClientGone, GatewayHTTPServer, ProxyRequestHandler, Refusal,
                                                  declared_length, read_body, split_target, write, write_refusal)
from labbatch.local.apigateway.lambda_proxy import (INTEGRATION_TIMEOUT_SECONDS, INTERNAL_SERVER_ERROR,
                                                    LocalLambdaContext, http_response, principal_id, proxy_event)
from labbatch.local.signing import ReceivedRequest

# What the API takes (labbatch/lab/api_limits.py): the front refuses a larger body before reading
# it, with 413 as API Gateway does over its own (larger) quota.
MAX_PAYLOAD_BYTES = MAX_BODY_BYTES

Handler = Callable[[dict[str, Any], Any], Any]


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
        self._handler = handler
        self._authorization = Authorization(credentials=credentials, region=region, token_check=token_check,
                                            invoke_check=invoke_check)
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
        self._caller_id = principal_id(caller_arn)
        # One Lambda execution environment gets one event at a time; Powertools' resolver
        # keeps the current event on the module-level app, so concurrent calls would mix them.
        self._invoke_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._server: GatewayHTTPServer | None = None
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
        server = GatewayHTTPServer((self._host, self._port), ProxyRequestHandler)
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

    def serve(self, http: ProxyRequestHandler) -> None:
        started = time.monotonic()
        raw_path, raw_query = split_target(http.path)
        try:
            status = self._respond(http, raw_path, raw_query)
        except (ClientGone, ConnectionError, TimeoutError):
            http.close_connection = True
            status = 499  # nginx's word for "the client closed the request"; nothing was sent
        self._log_request(http.command, raw_path, status, started)

    def refuse_early(self, http: ProxyRequestHandler) -> bool:
        """Answers `Expect: 100-continue` with the refusal when the body would be refused anyway."""
        started = time.monotonic()
        try:
            declared_length(http, self.max_payload_bytes)
        except Refusal as refusal:
            write_refusal(http, refusal)
            self._log_request(http.command, split_target(http.path)[0], refusal.status, started)
            return True
        return False

    def _log_request(self, method: str, raw_path: str, status: int, started: float) -> None:
        self.log(f"api {method} {unquote(raw_path)} {status} {(time.monotonic() - started) * 1000:.1f}ms")

    def _respond(self, http: ProxyRequestHandler, raw_path: str, raw_query: str) -> int:
        try:
            body = read_body(http, self.max_payload_bytes)
            request = ReceivedRequest(http.command, raw_path, raw_query, list(http.headers.items()), body)
            access_key, authorizer = self._authorization.authorize(request)
        except Refusal as refusal:
            return write_refusal(http, refusal)

        request_id = str(uuid.uuid4())
        event = proxy_event(request, source_ip=http.client_address[0], server_port=http.server.server_address[1],
                            protocol=http.request_version, access_key=access_key, request_id=request_id,
                            authorizer=authorizer, account_id=self.account_id, api_id=self.api_id,
                            stage=self.stage, caller_arn=self.caller_arn, caller_id=self._caller_id)
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
            status, headers, payload = http_response(result)
        except Exception:
            # The traceback is the operator's, in the server log; the caller learns only what
            # API Gateway would tell it.
            self.log(f"api handler failed for {http.command} {unquote(raw_path)} (request {request_id}):\n"
                     + traceback.format_exc().rstrip())
            status, headers, payload = 502, [("Content-Type", "application/json")], INTERNAL_SERVER_ERROR
        headers.append(("x-amzn-RequestId", request_id))
        write(http, status, headers, payload)
        return status

    def log(self, line: str) -> None:
        stream = self._log_stream or sys.stderr
        with self._log_lock:
            stream.write(line + "\n")
            stream.flush()
