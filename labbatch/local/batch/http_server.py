"""The local Batch endpoint on loopback: botocore's `batch` client talks to it through
`AWS_ENDPOINT_URL_BATCH`, so the API handler runs unchanged.

Errors carry the code both ways botocore's REST-JSON parser reads it (the `x-amzn-ErrorType`
header and `__type` in the body), so callers get `ClientError` with `ClientException`.
Signatures are not checked: only processes on this machine reach loopback, and the API in
front (which does check SigV4) is the lab's boundary. Under strict IAM the caller (by its access
key) must be allowed the call by its policies (labbatch.local.iam).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from labbatch.local.batch.api import BatchApi
from labbatch.local.iam import actions
from labbatch.local.iam.enforce import Refused
from labbatch.local.batch.calls import BatchClientError, BatchServerError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # Batch's own requests stay under 30 KiB; this only bounds abuse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses its connections
    # Headers and body go out in two writes; with Nagle's algorithm and the client's delayed
    # ACK every keep-alive answer would wait about 40 ms.
    disable_nagle_algorithm = True
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise BatchClientError(f"request body of {length:,} bytes is too large")
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise BatchClientError("request body must be a JSON object")
            path = self.path.split("?", 1)[0]
            guard = self.server.guard
            if guard is not None and guard.mode != "off":
                refused = _refused(guard, self.headers, path, body, self.server.api)
                if refused is not None:
                    code = "AccessDeniedException" if refused.code == "AccessDenied" else refused.code
                    self._reply(403, {"__type": code, "message": refused.message}, error_type=code)
                    return
            answer = self.server.api.operation(path)(body)
            self._reply(200, answer)
        except (BatchClientError, BatchServerError) as exc:
            self._reply(exc.status, {"__type": exc.code, "message": str(exc)}, error_type=exc.code)
        except json.JSONDecodeError as exc:
            self._reply(400, {"__type": "ClientException", "message": f"request body is not JSON: {exc}"},
                        error_type="ClientException")
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 in Batch's shape, not a dropped connection
            log.exception("local Batch: %s failed", self.path)
            self._reply(500, {"__type": "ServerException", "message": f"{type(exc).__name__}: {exc}"},
                        error_type="ServerException")

    def do_GET(self) -> None:  # noqa: N802
        self._reply(404, {"__type": "ClientException", "message": "Batch operations are POST /v1/<operation>"},
                    error_type="ClientException")

    def _reply(self, status: int, body: dict[str, Any], *, error_type: str | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if error_type is not None:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("local Batch: " + format, *args)


def _refused(guard: Any, headers: Any, path: str, body: dict[str, Any], api: BatchApi) -> Any:
    """Strict IAM (labbatch.local.iam): the caller's policies checked before the call runs."""
    try:
        principal = guard.caller(headers.get("Authorization"), headers.get("X-Amz-Security-Token"))
        if principal is not None:
            guard.check(principal, actions.batch_requests(path, body, guard.where, api.job_tags))
    except Refused as refused:
        return refused
    except actions.Unnamed as exc:
        return Refused("AccessDenied", f"local mode cannot tell which IAM action this request is: {exc}")
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    guard: Any = None  # an Authorizer (labbatch.local.iam.enforce) under strict IAM
    allow_reuse_address = False  # a busy port must fail, not be shared

    def __init__(self, address: tuple[str, int], api: BatchApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class BatchHttpServer:
    def __init__(self, api: BatchApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), api)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="local-batch-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
