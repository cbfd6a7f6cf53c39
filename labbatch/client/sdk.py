"""The job API's Python client: SigV4-signed HTTPS calls, answers as dicts, refusals as exceptions.

Signing and sending are botocore's (SigV4Auth, URLLib3Session), so the client honours the
same credential chain, proxies and CA bundles as the AWS CLI, with no other HTTP library.
Finding a lab's endpoint (flag, environment, a running local lab, the deployed stack's
outputs) is `resolve_connection`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from botocore.httpsession import URLLib3Session
from botocore.utils import get_environ_proxies

from labbatch_contract import names
from labbatch_contract.local_state import accepts_connections, labbatch_home, local_state_path
from labbatch_contract.failures import RECOVERABLE_FAILURES
# The API refuses bodies over MAX_BODY_BYTES (5 MiB); saying so before sending beats a 413.
from labbatch.lab.api_limits import MAX_BODY_BYTES

SERVICE = "execute-api"
DEFAULT_TIMEOUT_SECONDS = 30.0
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
# Answers worth polling through: the API is throttled or briefly unavailable.
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})

# The API's field names, in one place in case the handler's ever differ.
JOBS_FIELD = "jobs"
NEXT_TOKEN_FIELD = "next_token"
PIPELINES_FIELD = "pipelines"
# API Gateway's own answers (403 from IAM, 502/504 from the integration) carry only a message.
_GATEWAY_CODES = {403: "forbidden", 404: "not_found", 413: "payload_too_large", 429: "throttled",
                  502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout"}


class LabBatchError(Exception):
    """A failure the caller can act on; `code: message` is the whole story."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = dict(details or {})


class LabBatchApiError(LabBatchError):
    """The API answered with an error (4xx/5xx), or with something that is not the API's JSON."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                 *, retry_after: float | None = None):
        super().__init__(code, message, details)
        self.status = status
        self.retry_after = retry_after


class LabBatchConnectionError(LabBatchError):
    """The API could not be reached or did not answer in time."""


class LabBatchClient:
    """One lab's job API. Methods return the API's JSON; refusals raise LabBatchApiError."""

    def __init__(
        self,
        endpoint: str,
        *,
        region: str,
        credentials: Credentials | tuple[str, str] | None = None,
        session: botocore.session.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LabBatchError("bad_endpoint",
                                f"{endpoint!r} is not a URL like https://id.execute-api.region.amazonaws.com/prod")
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        if isinstance(credentials, tuple):
            credentials = Credentials(*credentials)
        if credentials is None:
            try:
                credentials = (session or botocore.session.Session()).get_credentials()
            except BotoCoreError as error:  # a missing profile, a broken SSO cache, ...
                raise LabBatchError("no_credentials", str(error)) from None
        if credentials is None:
            raise LabBatchError("no_credentials", "no AWS credentials found: configure a profile "
                                "(aws configure / aws sso login) and pass --profile, or set AWS_PROFILE")
        self._credentials = credentials
        self._timeout = timeout
        # botocore's own clients set TCP_NODELAY; a bare URLLib3Session does not, and each
        # request body would then wait ~40 ms for the server's delayed ACK.
        self._http = URLLib3Session(proxies=get_environ_proxies(self.endpoint), timeout=timeout,
                                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])

    # -- the API ------------------------------------------------------------------------

    def submit(
        self,
        pipeline: str,
        inputs: Sequence[str] = (),
        *,
        parameters: Mapping[str, str] | None = None,
        queue: str | None = None,
        vcpus: int | None = None,
        memory_mib: int | None = None,
        name: str | None = None,
        samples: Sequence[Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
        pool: str | None = None,
        gpus: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"pipeline": pipeline, "inputs": list(inputs)}
        optional = {"parameters": dict(parameters) if parameters else None, "queue": queue, "pool": pool, "vcpus": vcpus,
                    "gpus": gpus,
                    "memory_mib": memory_mib, "name": name, "samples": list(samples) if samples else None}
        body.update({key: value for key, value in optional.items() if value is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/jobs", body=body, headers=headers)

    def get(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{quote(job_id, safe='')}")

    def child(self, job_id: str, child: str | int) -> dict[str, Any]:
        """One child of an array job, by array index or sample name."""
        return self.request("GET", f"/jobs/{quote(job_id, safe='')}/children/{quote(str(child), safe='')}")

    def failed_children(self, job_id: str, *, next_token: str | None = None,
                        limit: int | None = None) -> dict[str, Any]:
        """One page of an array job's failed children: {"children": [...], "next_token": str | None}."""
        page = self.request("GET", f"/jobs/{quote(job_id, safe='')}/children",
                            query={"status": "FAILED", "next_token": next_token, "limit": limit})
        return {"children": page.get("children", []), "next_token": page.get("next_token")}

    def list(self, *, status: str | None = None, pipeline: str | None = None, next_token: str | None = None,
             limit: int | None = None) -> dict[str, Any]:
        """One page, newest first: {"jobs": [...], "next_token": str | None}."""
        query = {"status": status, "pipeline": pipeline, "next_token": next_token, "limit": limit}
        page = self.request("GET", "/jobs", query=query)
        return {"jobs": page.get(JOBS_FIELD, []), "next_token": page.get(NEXT_TOKEN_FIELD)}

    def iter_jobs(self, *, status: str | None = None, pipeline: str | None = None,
                  limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every job, following next_token to the last page."""
        token = None
        while True:
            page = self.list(status=status, pipeline=pipeline, next_token=token, limit=limit)
            yield from page["jobs"]
            token = page["next_token"]
            if not token:
                return

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/jobs/{quote(job_id, safe='')}")

    def pipelines(self) -> list[dict[str, Any]]:
        return self.request("GET", "/pipelines").get(PIPELINES_FIELD, [])

    def pipelines_and_pools(self) -> dict[str, list[dict[str, Any]]]:
        """GET /pipelines whole: {"pipelines": [...], "pools": [...]}."""
        answer = self.request("GET", "/pipelines")
        return {PIPELINES_FIELD: answer.get(PIPELINES_FIELD, []), "pools": answer.get("pools", [])}

    def lab(self) -> dict[str, Any]:
        """The lab's queues, compute environments and pipeline images as Batch reports them, and the caller."""
        return self.request("GET", "/lab")

    def wait(
        self,
        job_ids: Sequence[str],
        *,
        timeout: float | None = None,
        interval: float = 5.0,
        on_update: Callable[[dict[str, dict[str, Any]]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        follow_recoveries: bool = True,
        decision_grace: float = 30.0,
    ) -> dict[str, dict[str, Any]]:
        """Polls until every job is SUCCEEDED or FAILED; returns the last record of each.

        A job LabBatch resubmitted (`recovered_by`) is followed to its recovery, whose record
        is returned under the original id. The status updater writes FAILED together with its
        class and recovery decision; a recoverable failure without a decision (a lab deployed
        before it did so) is polled for up to `decision_grace` seconds before it counts as final.
        Raises LabBatchError("timeout", ...) when `timeout` seconds pass first. Throttling and
        brief unavailability are polled through, since the jobs run on regardless.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        current = {job_id: job_id for job_id in job_ids}  # original -> the job that now carries it
        undecided_since: dict[str, float] = {}
        records: dict[str, dict[str, Any]] = {}
        finished: set[str] = set()
        while True:
            for job_id in job_ids:
                if job_id in finished:
                    continue
                try:
                    record = self.get(current[job_id])
                except LabBatchApiError as error:
                    if error.status not in _TRANSIENT_STATUSES:
                        raise
                    continue
                records[job_id] = record
                if record.get("status") not in FINAL_STATUSES:
                    continue
                if follow_recoveries and record.get("recovered_by"):
                    current[job_id] = record["recovered_by"]
                    continue
                if follow_recoveries and _recovery_pending(record):
                    first = undecided_since.setdefault(current[job_id], time.monotonic())
                    if time.monotonic() - first < decision_grace:
                        continue
                finished.add(job_id)
            if on_update is not None:
                on_update(records)
            if len(finished) == len(job_ids):
                return records
            if deadline is not None and time.monotonic() + interval > deadline:
                unfinished = [j for j in job_ids if j not in finished]
                raise LabBatchError("timeout", f"{len(unfinished)} job(s) not finished after {timeout:g} s",
                                    {"unfinished": unfinished})
            sleep(interval)

    # -- HTTP -----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        url = self.endpoint + path
        query_string = encode_query(query or {})
        if query_string:
            url += "?" + query_string
        data = b"" if body is None else json.dumps(body).encode("utf-8")
        if len(data) > MAX_BODY_BYTES:
            raise LabBatchError("payload_too_large", f"the request is {len(data):,} bytes; the API accepts at most "
                                f"{MAX_BODY_BYTES:,} (5 MiB): split the samples over several jobs")
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        try:
            signed = sign_request(self._credentials, self.region, method, url, all_headers, data)
        except BotoCoreError as error:  # refreshing expired SSO or role credentials failed
            raise LabBatchError("no_credentials", f"cannot sign the request: {error}") from None
        try:
            response = self._http.send(signed.prepare())
        except (ConnectTimeoutError, ReadTimeoutError):
            raise LabBatchConnectionError(
                "timeout", f"{self.endpoint} did not answer within {self._timeout:g} s") from None
        except BotoCoreError as error:
            raise LabBatchConnectionError("unreachable", f"cannot reach {self.endpoint}: {_reason(error)}") from None
        return _parse_response(response.status_code, response.headers, response.content)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabBatchClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def encode_query(query: Mapping[str, Any]) -> str:
    """The query as SigV4 canonicalizes it (RFC 3986, no '+' for spaces), so what is signed is what is sent."""
    pairs = [(str(key), str(value)) for key, value in query.items() if value is not None]
    return "&".join(f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key, value in pairs)


def sign_request(credentials: Credentials, region: str, method: str, url: str,
                 headers: Mapping[str, str], body: bytes) -> AWSRequest:
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    # Frozen: refreshable credentials (SSO, assumed roles) must not change between the key
    # id and the secret being read.
    SigV4Auth(credentials.get_frozen_credentials(), SERVICE, region).add_auth(request)
    return request


def _parse_response(status: int, headers: Mapping[str, str], content: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(content) if content else {}
    except ValueError:
        payload = None
    if 200 <= status < 300:
        if isinstance(payload, dict):
            return payload
        raise LabBatchApiError(status, "bad_response", f"the API answered {status} with a body that is not "
                               f"a JSON object: {_excerpt(content)}")
    raise _api_error(status, payload, content, _retry_after(headers))


def _api_error(status: int, payload: Any, content: bytes, retry_after: float | None) -> LabBatchApiError:
    code = _GATEWAY_CODES.get(status, f"http_{status}")
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        return LabBatchApiError(status, str(error.get("code") or code), str(error.get("message") or ""),
                                details if isinstance(details, dict) else {}, retry_after=retry_after)
    if isinstance(payload, dict) and "message" in payload:
        return LabBatchApiError(status, code, str(payload["message"]), retry_after=retry_after)
    return LabBatchApiError(status, code, f"the API answered {status}: {_excerpt(content) or 'no body'}",
                            retry_after=retry_after)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers.get("Retry-After") or "")
    except ValueError:
        return None


def _excerpt(content: bytes, limit: int = 200) -> str:
    text = content.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _reason(error: BotoCoreError) -> str:
    """The innermost reason ("Connection refused"), not urllib3's object reprs around it."""
    inner = str(getattr(error, "kwargs", {}).get("error") or error)
    return inner.rsplit("] ", 1)[-1] if "[Errno" in inner else inner


# -- where a lab's API is -------------------------------------------------------------------

ENDPOINT_ENV = "LABBATCH_ENDPOINT"
API_STACK_OUTPUT = names.API_ENDPOINT_OUTPUT


@dataclass(frozen=True)
class Connection:
    """Where a lab's API is, how to sign for it, and how that was found (for messages)."""

    endpoint: str
    region: str
    credentials: Credentials | None
    profile: str | None
    found_by: str

    def client(self, **kwargs: Any) -> LabBatchClient:
        session = None if self.credentials is not None else profile_session(self.profile)
        return LabBatchClient(self.endpoint, region=self.region, credentials=self.credentials,
                              session=session, **kwargs)


# The name `labbatch doctor` gives its canary jobs; `labbatch list` hides them unless --all.
DOCTOR_CANARY_PREFIX = "labbatch-doctor-canary-"


def is_doctor_canary(job: Mapping[str, Any]) -> bool:
    return str(job.get("name") or "").startswith(DOCTOR_CANARY_PREFIX)


# Failure classes LabBatch may resubmit (lambda/labbatch_status/recovery.py); an application failure never is.


def _recovery_pending(record: Mapping[str, Any]) -> bool:
    return (record.get("status") == "FAILED" and record.get("failure") in RECOVERABLE_FAILURES
            and not record.get("recovered_by") and not record.get("recovery_refused")
            and not record.get("array_size"))


def resolve_connection(*, endpoint: str | None = None, lab: str | None = None, profile: str | None = None,
                       region: str | None = None, environ: Mapping[str, str] = os.environ) -> Connection:
    """--endpoint, then $LABBATCH_ENDPOINT, then a running local lab, then the lab's API stack."""
    local_labs = _local_lab_states(environ)
    for url, found_by in ((endpoint, "--endpoint"), (environ.get(ENDPOINT_ENV), ENDPOINT_ENV)):
        if url:
            # A local lab's own URL signs with that lab's credentials, with no other flag.
            local = local_lab_state(url, states=local_labs)
            if local is not None:
                return _local_connection(local, region, f"{found_by} (local lab {local['lab']})")
            return Connection(url, region or _region_of(url, profile), None, profile, found_by)
    if lab is None:
        running = {name: state for name, state in local_labs.items() if accepts_connections(state["api"])}
        if len(running) == 1:
            return _local_connection(next(iter(running.values())), region, "the running local lab")
        if running:
            raise LabBatchError("ambiguous_lab", f"several local labs are running ({', '.join(sorted(running))}): "
                                "name one with --lab")
        raise LabBatchError("no_endpoint", "no lab to talk to: pass --endpoint URL, set LABBATCH_ENDPOINT, "
                            "start one with `labbatch local`, or name a deployed lab with --lab")
    local = local_labs.get(lab)
    if local is not None and accepts_connections(local["api"]):
        return _local_connection(local, region, f"local lab {lab}")
    try:
        return _deployed_connection(lab, profile, region)
    except LabBatchError as error:
        if local is None:
            raise
        # A crashed local lab leaves its state file; say so rather than only blame AWS.
        raise LabBatchError(error.code, f"local lab {lab} is not running ({local_state_path(lab, environ)} is "
                            f"stale: start it with `labbatch local --lab {lab}`), and {error.message}") from None


def _local_lab_states(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The state files of local labs, by lab name; unreadable or incomplete ones are skipped."""
    labs: dict[str, dict[str, Any]] = {}
    for path in sorted((labbatch_home(environ) / "local").glob("*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict) or not isinstance(state.get("api"), str):
            continue
        keys = state.get("credentials")
        if not isinstance(keys, dict) or not {"access_key_id", "secret_access_key"} <= keys.keys():
            continue
        labs[path.stem] = {**state, "lab": state.get("lab") or path.stem}
    return labs


def _local_connection(state: Mapping[str, Any], region: str | None, found_by: str) -> Connection:
    keys = state["credentials"]
    return Connection(
        endpoint=state["api"],
        region=region or state.get("region") or "us-east-1",
        credentials=Credentials(keys["access_key_id"], keys["secret_access_key"]),
        profile=None,
        found_by=found_by,
    )


def _deployed_connection(lab: str, profile: str | None, region: str | None) -> Connection:
    stack = names.stack(lab, "Api")
    session = profile_session(profile)
    region = region or session.get_config_variable("region")
    if not region:
        raise LabBatchError("no_region", f"which Region is lab {lab} in? pass --region or set one in your AWS profile")
    try:
        cloudformation = session.create_client("cloudformation", region_name=region)
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise LabBatchError("no_endpoint", f"cannot read stack {stack} in {region}: {message} "
                            "(is the lab deployed there? or pass --endpoint)") from None
    except BotoCoreError as error:
        raise LabBatchError("no_endpoint", f"cannot read stack {stack} in {region}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}
    # CDK keeps a stack-level CfnOutput's id as its key; one made inside a construct gets a suffix.
    url = outputs.get(API_STACK_OUTPUT) or next(
        (value for key, value in sorted(outputs.items()) if key.startswith(API_STACK_OUTPUT)), None)
    if not url:
        raise LabBatchError("no_endpoint", f"stack {stack} has no {API_STACK_OUTPUT} output (is it fully deployed?)")
    return Connection(url, region, None, profile, f"stack {stack}")


def profile_session(profile: str | None) -> botocore.session.Session:
    session = botocore.session.Session(profile=profile)
    try:
        session.get_scoped_config()  # a misspelt --profile fails here, in one line, not later in a traceback
    except BotoCoreError as error:
        raise LabBatchError("bad_profile", str(error)) from None
    return session


def _region_of(url: str, profile: str | None) -> str:
    # https://<id>.execute-api.<region>.amazonaws.com/<stage>
    host_parts = (urlsplit(url).hostname or "").split(".")
    if "execute-api" in host_parts and host_parts.index("execute-api") + 1 < len(host_parts):
        return host_parts[host_parts.index("execute-api") + 1]
    region = profile_session(profile).get_config_variable("region")
    if not region:
        raise LabBatchError("no_region", f"cannot tell the Region of {url}: pass --region")
    return region


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def local_lab_state(endpoint: str, environ: Mapping[str, str] = os.environ,
                    states: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The state file of the local lab whose API is at `endpoint`, if it is one (`states`: those
    already read)."""
    states = _local_lab_states(environ) if states is None else states
    return next((state for state in states.values() if _same_url(state["api"], endpoint)), None)


