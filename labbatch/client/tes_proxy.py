"""`labbatch tes-proxy`: a localhost HTTP proxy through which TES clients reach a lab.

No TES client (py-tes, Snakemake's TES executor, Nextflow's nf-ga4gh, Cromwell) can sign SigV4.
The proxy listens on 127.0.0.1 only, forwards `/ga4gh/tes/v1/...` to the lab's API with a bearer token it mints at start
(and revokes at exit) with the scientist's own AWS credentials, or else re-signs every request with them (the profile's, or a local
lab's from its state file), dropping whatever Authorization the client sent (Snakemake sends
`Basic None:None`). py-tes 0.4 (what the Snakemake plugin and Nextflow use) calls `/v1/tasks`
and `/v1/tasks/service-info`: both are mapped onto `/ga4gh/tes/v1/`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session

from labbatch.client.command_base import connection_of
from labbatch.client.sdk import Connection, LabBatchError, profile_session, sign_request
from labbatch_contract.tes import TES_BASE, tes_api_path

MAX_BODY_BYTES = 10 * 1024 * 1024
# Headers of the client's that reach the API; everything else (Authorization above all) stays here.
FORWARDED_HEADERS = ("content-type", "accept")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class TesProxy:
    def __init__(self, connection: Connection, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        self.connection = connection
        # With a token (the lab's TES subtree takes tokens, not SigV4), requests carry it as Bearer.
        self.token = token
        self._http = URLLib3Session(timeout=60)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr
                sys.stderr.write(f"tes-proxy: {self.command} {self.path} {fmt % args}\n")

            def _forward(self) -> None:
                proxy.forward(self)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def credentials(self):
        if self.connection.credentials is not None:
            return self.connection.credentials
        credentials = profile_session(self.connection.profile).get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign with (set a profile or the usual environment)")
        return credentials

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        split = urlsplit(request.path)
        target = tes_api_path(split.path)
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return self._reply(request, 413, {"error": {"code": "body_too_large", "message": "body over 10 MB"}})
        body = request.rfile.read(length) if length else b""
        if target is None:
            return self._reply(request, 404, {"error": {"code": "not_tes", "message":
                                                        f"{split.path}: this proxy forwards only {TES_BASE}/... "
                                                        "and /v1/tasks..."}})
        url = self.connection.endpoint.rstrip("/") + target + (f"?{split.query}" if split.query else "")
        headers = {name: value for name, value in request.headers.items() if name.lower() in FORWARDED_HEADERS}
        if body and "content-type" not in {h.lower() for h in headers}:
            headers["Content-Type"] = "application/json"
        try:
            if self.token:
                outgoing = AWSRequest(method=request.command, url=url,
                                      headers={**headers, "Authorization": f"Bearer {self.token}"}, data=body)
            else:
                outgoing = sign_request(self.credentials(), self.connection.region, request.command, url, headers, body)
            answer = self._http.send(outgoing.prepare())
        except Exception as exc:  # noqa: BLE001 - the client gets a 502 naming what failed
            return self._reply(request, 502, {"error": {"code": "api_unreachable", "message": f"{url}: {exc}"}})
        content = answer.content
        request.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in HOP_BY_HOP:
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        content = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)

    def start(self) -> "TesProxy":
        self._thread = threading.Thread(target=self.server.serve_forever, name="tes-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tes_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="local port to listen on, 127.0.0.1 only "
                        "(default 8765; 0 picks a free one)")


def run_tes_proxy(args: argparse.Namespace) -> int:
    connection = connection_of(args)
    token = _mint_token(connection)
    proxy = TesProxy(connection, port=args.port, token=token["token"] if token else None)
    print(json.dumps({"tes_url": proxy.url, "api": connection.endpoint, "found_by": connection.found_by,
                      "auth": "bearer token " + token["id"] if token else "sigv4",
                      "snakemake": f"--executor tes --tes-url {proxy.url}"}), flush=True)
    try:
        proxy.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server.server_close()
        if token:
            try:
                connection.client().request("DELETE", f"/tokens/{token['id']}")
            except LabBatchError:
                pass  # it expires anyway
    return 0


def _mint_token(connection: Connection) -> dict | None:
    """A short-lived token of the proxy's own, minted with the scientist's AWS credentials: a lab
    with TES checks tokens (a Lambda authorizer) on its TES paths, where SigV4 is not accepted.
    None when the API has no token routes (an older deployment): then each request is signed."""
    try:
        with connection.client() as client:
            return client.request("POST", "/tokens", body={"name": "labbatch tes-proxy", "expires_days": 7})
    except LabBatchError:
        return None
