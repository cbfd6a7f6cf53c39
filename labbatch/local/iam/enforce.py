"""Strict IAM for local mode: every call to the emulator or the local Batch endpoint is checked
against the calling principal's policies (evaluate.py) and refused with AccessDenied, in the
service's own error shape, when AWS would refuse it. What was allowed, and by which statement,
is kept for `--iam-report`.

The caller is known by the access key id in its SigV4 credential scope (and its session token
must be the one issued with that key). Signatures themselves are not recomputed: only processes
on this machine reach loopback, and each principal's secret is handed only to that principal.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from labbatch.local.iam import actions
from labbatch.local.iam.evaluate import Decision, Principal, Request, Unsupported, evaluate
from labbatch.local.iam.templates import Policy

_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")
MODES = ("strict", "warn", "off")


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str
    session_token: str


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Authorizer:
    """Principals by access key, the resources' policies, and the record of what each did."""

    def __init__(self, *, where: actions.Where, resource_policies: dict[str, list[Policy]], mode: str = "strict",
                 unrestricted: Iterable[str] = (), warn: Callable[[str], None] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"IAM mode {mode!r} (allowed: {', '.join(MODES)})")
        self.where, self.mode = where, mode
        self._policies = resource_policies
        self._principals: dict[str, tuple[Principal, Keys]] = {}
        # Local mode's own set-up (CloudFormation's part in AWS): not a lab principal, not checked.
        self._unrestricted = set(unrestricted)
        self._lock = threading.Lock()
        self._used: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))

    def add(self, principal: Principal, keys: Keys) -> None:
        self._principals[keys.access_key_id] = (principal, keys)

    def principal(self, name: str) -> Principal:
        return next(p for p, _ in self._principals.values() if p.name == name)

    def caller(self, authorization: str | None, token: str | None) -> Principal | None:
        """The principal that signed, None for local mode itself; Refused for anyone else."""
        match = _ACCESS_KEY.search(authorization or "")
        if match is None:
            raise Refused("MissingAuthenticationToken", "Request is missing Authentication Token")
        key = match.group(1)
        if key in self._unrestricted:
            return None
        found = self._principals.get(key)
        if found is None:
            raise Refused("InvalidClientTokenId", f"The security token included in the request is invalid ({key} is "
                          "no principal of this local lab).")
        principal, keys = found
        if (token or None) != (keys.session_token or None):
            raise Refused("InvalidClientTokenId", "The security token included in the request is invalid.")
        return principal

    def check(self, principal: Principal, requests: list[Request]) -> None:
        """Raises Refused (AccessDenied) on the first request the policies do not allow."""
        for request in requests:
            decision = self._decide(principal, request)
            self._record(principal, request, decision)
            if not decision.allowed:
                message = (f"User: {principal.arn} is not authorized to perform: {request.action} on resource: "
                           f"{request.resource} because {decision.reason}"
                           + (f" ({', '.join(decision.denied_by)})" if decision.denied_by else ""))
                if self.mode == "strict":
                    raise Refused("AccessDenied", message)
                self._warn(f"labbatch local: IAM would refuse: {message}")

    def _decide(self, principal: Principal, request: Request) -> Decision:
        on = self._resource_policies(request.resource)
        try:
            return evaluate(principal, request, on, key_policy=request.action.startswith("kms:") and bool(on))
        except Unsupported as exc:
            return Decision(False, reason=f"local mode cannot evaluate a policy that applies: {exc}")

    def _resource_policies(self, resource: str) -> list[Policy]:
        if resource.startswith("arn:aws:s3:::"):
            return self._policies.get(resource.split("/", 1)[0], [])
        if resource.startswith("arn:aws:execute-api:"):
            return self._policies.get(resource.split("/", 1)[0], [])
        return self._policies.get(resource, [])

    def _record(self, principal: Principal, request: Request, decision: Decision) -> None:
        with self._lock:
            entry = self._used.setdefault(principal.name, {}).setdefault(
                (request.action, request.resource),
                {"action": request.action, "resource": request.resource, "calls": 0,
                 "allowed_by": list(decision.allowed_by), "refused": None})
            entry["calls"] += 1
            if not decision.allowed:
                entry["refused"] = decision.reason + (f" ({', '.join(decision.denied_by)})" if decision.denied_by else "")

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"mode": self.mode, "principals": {
                principal.name: {"arn": principal.arn, "calls": sorted(
                    (dict(entry) for entry in self._used.get(principal.name, {}).values()),
                    key=lambda e: (e["action"], e["resource"]))}
                for principal, _ in self._principals.values()}}

    def write_report(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.report(), handle, indent=2)
            handle.write("\n")


class EnforcingApp:
    """WSGI middleware in front of moto: names each request (actions.py), checks it, and answers
    AccessDenied in the protocol's own shape before moto sees a refused request."""

    def __init__(self, app: Callable[..., Iterable[bytes]], authorizer: Callable[[], Authorizer | None]) -> None:
        # The authorizer comes once local mode has created the lab's resources (as its deployer).
        self._app, self._authorizer_of = app, authorizer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        authorizer = self._authorizer_of()
        # /moto-api/ is the emulator's own control plane (its request recorder, used by tests), not AWS.
        if authorizer is None or authorizer.mode == "off" or environ.get("PATH_INFO", "").startswith("/moto-api/"):
            return self._app(environ, start_response)
        self._authorizer = authorizer
        service = actions.service_of(environ) or ""
        body = b""
        # S3 bodies stay streamed (objects can be large); only a DeleteObjects body names keys.
        if service != "s3" or (environ["REQUEST_METHOD"] == "POST" and "delete" in environ.get("QUERY_STRING", "")):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = _Replay(body)
        try:
            principal = self._authorizer.caller(environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_AMZ_SECURITY_TOKEN"))
            if principal is not None:
                self._authorizer.check(principal, self._requests(service, environ, body))
        except Refused as refused:
            return _refusal(service, environ, refused, start_response)
        except actions.Unnamed as exc:
            return _refusal(service, environ, Refused("AccessDenied", f"local mode cannot tell which IAM action this "
                                                      f"request is, so strict IAM refuses it: {exc}"), start_response)
        return self._app(environ, start_response)

    def _requests(self, service: str, environ: dict[str, Any], body: bytes) -> list[Request]:
        where = self._authorizer.where
        target = environ.get("HTTP_X_AMZ_TARGET")
        if service == "s3":
            headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
            return actions.s3_requests(environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"),
                                       environ.get("QUERY_STRING", ""), headers, body, where)
        if target:
            return actions.json_requests(target, body, where)
        if service in ("sns", "sts"):
            return actions.query_requests(service, body, environ.get("QUERY_STRING", ""), where)
        raise actions.Unnamed(f"a {service or 'unsigned'} request to {environ.get('PATH_INFO')}")


class _Replay:
    def __init__(self, body: bytes) -> None:
        self._body, self._at = body, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._body) if size is None or size < 0 else min(len(self._body), self._at + size)
        chunk, self._at = self._body[self._at:end], end
        return chunk

    def readline(self, size: int = -1) -> bytes:
        end = self._body.find(b"\n", self._at)
        end = len(self._body) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, self._at + size)
        chunk, self._at = self._body[self._at:end], end
        return chunk

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def _refusal(service: str, environ: dict[str, Any], refused: Refused,
             start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("HTTP_X_AMZ_TARGET"):
        code = "AccessDeniedException" if refused.code == "AccessDenied" else "UnrecognizedClientException"
        prefix = "com.amazonaws.dynamodb.v20120810#" if service == "dynamodb" else ""
        payload = json.dumps({"__type": prefix + code, "message": refused.message}).encode()
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                           ("x-amzn-ErrorType", code), ("Content-Length", str(len(payload)))])
        return [payload]
    if service in ("sns", "sts"):
        code = "AuthorizationError" if service == "sns" and refused.code == "AccessDenied" else refused.code
        payload = (f'<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{_xml(refused.message)}'
                   f'</Message></Error><RequestId>local</RequestId></ErrorResponse>').encode()
    else:
        payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{refused.code}</Code>'
                   f'<Message>{_xml(refused.message)}</Message><RequestId>local</RequestId></Error>').encode()
    start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))])
    return [payload]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
