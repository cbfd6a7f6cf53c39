"""Each principal's own credentials, delivered the way AWS delivers them.

- Job containers (and host jobs) get the job role's credentials from a container-credentials
  endpoint, as ECS serves them at 169.254.170.2: local mode serves them on loopback and a job
  finds them through AWS_CONTAINER_CREDENTIALS_FULL_URI plus AWS_CONTAINER_AUTHORIZATION_TOKEN,
  which botocore's standard container provider reads (it accepts a full URI only on loopback, and
  169.254.170.2 is not routable from a host-network container here). No AWS key reaches a job's
  environment.
- The Lambda handlers run in this one process, where AWS gives each function its own execution
  role through its own environment. Here boto3's default session hands a new client the
  credentials of the principal the calling thread acts as (`acting_as`); clients keep them, so a
  handler's worker threads sign as the handler did. A client built outside any principal fails
  with a clear error instead of signing as someone else.
"""

from __future__ import annotations

import contextlib
import contextvars
import hmac
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import boto3
import botocore.session
from botocore.credentials import Credentials

from labbatch.local.iam.enforce import Keys

_ACTING_AS: contextvars.ContextVar[Keys | None] = contextvars.ContextVar("labbatch_local_principal", default=None)
# ECS hands out credentials valid for hours and refreshes them before they expire; local ones last the run.
EXPIRY = timedelta(hours=6)


def new_keys(name: str, *, long_term: bool = False) -> Keys:
    """A role's temporary keys (ASIA..., with a session token) or a user's long-term ones (AKIA...)."""
    tag = "".join(c for c in name.upper() if c.isalnum())[:8]
    prefix = "AKIA" if long_term else "ASIA"
    return Keys(access_key_id=f"{prefix}LOCAL{tag}{secrets.token_hex(4).upper()}",
                secret_access_key=secrets.token_urlsafe(30), session_token="" if long_term else secrets.token_urlsafe(48))


class NoPrincipal(RuntimeError):
    pass


class _PrincipalSession(botocore.session.Session):
    def get_credentials(self) -> Credentials:
        keys = _ACTING_AS.get()
        if keys is None:
            raise NoPrincipal("an AWS client was built in local mode outside any principal (strict IAM gives each "
                              "handler its role's credentials; this code runs as none of them)")
        return Credentials(keys.access_key_id, keys.secret_access_key, keys.session_token)


def install_default_session(region: str) -> Callable[[], None]:
    """boto3's default session (what `boto3.client(...)` uses) becomes principal-aware; returns
    what puts the previous one back (at stop)."""
    previous = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = boto3.Session(botocore_session=_PrincipalSession(), region_name=region)

    def restore() -> None:
        boto3.DEFAULT_SESSION = previous
    return restore


@contextlib.contextmanager
def acting_as(keys: Keys) -> Iterator[None]:
    token = _ACTING_AS.set(keys)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


class CredentialsEndpoint:
    """GET /v2/credentials/<id> with the right Authorization header -> that principal's keys, in
    the JSON shape of ECS's endpoint."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._grants: dict[str, tuple[str, Keys]] = {}
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                grant = endpoint._grants.get(self.path.rsplit("/", 1)[-1])
                token = self.headers.get("Authorization") or ""
                if grant is None or not self.path.startswith("/v2/credentials/") or not hmac.compare_digest(grant[0], token):
                    self._answer(403 if grant else 404, {"code": "AccessDenied", "message": "no credentials here for you"})
                    return
                keys = grant[1]
                expiry = (datetime.now(UTC) + EXPIRY).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._answer(200, {"AccessKeyId": keys.access_key_id, "SecretAccessKey": keys.secret_access_key,
                                   "Token": keys.session_token, "Expiration": expiry, "RoleArn": grant_arn(grant)})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._roles: dict[str, str] = {}

        def grant_arn(grant: tuple[str, Keys]) -> str:
            return self._roles.get(grant[1].access_key_id, "")

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="local-container-credentials", daemon=True)

    def start(self) -> CredentialsEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def environment(self, keys: Keys, role_arn: str) -> dict[str, str]:
        """The variables a job gets to find `keys` (a role's), as ECS's agent sets its own."""
        grant_id, token = secrets.token_hex(16), secrets.token_urlsafe(32)
        self._grants[grant_id] = (token, keys)
        self._roles[keys.access_key_id] = role_arn
        host, port = self._server.server_address[:2]
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{host}:{port}/v2/credentials/{grant_id}",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": token}
