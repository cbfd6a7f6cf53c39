"""A minimal in-memory job API behind the real local API Gateway front, for the client's tests.

It implements the contract's routes only as far as the client needs them, so the client is
tested against signed HTTP without waiting for (or depending on) the real handler.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labbatch.local.apigateway import LocalApiGateway

REGION = "eu-central-1"
ACCOUNT = "123456789012"
KEY, SECRET = "AKIACLIENTTESTKEY001", "client-test-secret"
CALLER = f"arn:aws:iam::{ACCOUNT}:user/local-scientist"
PIPELINES = [
    {"name": "fastq-stats", "description": "FASTQ statistics",
     "defaults": {"vcpus": 1, "memory_mib": 2048, "timeout_minutes": 60, "disk_factor": 2.0, "queue": "spot"},
     "parameters": {}, "limits": {"max_vcpus": 8, "max_memory_mib": 30000, "scratch_gib": 100}},
    {"name": "align", "description": "Align reads",
     "defaults": {"vcpus": 2, "memory_mib": 4096, "timeout_minutes": 120, "disk_factor": 3.0, "queue": "spot"},
     "parameters": {"reference": {"required": True, "default": None}},
     "limits": {"max_vcpus": 8, "max_memory_mib": 30000, "scratch_gib": 100}},
]


def _error(http_status: int, code: str, message: str, /, **details: Any) -> dict:
    return {"statusCode": http_status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": {"code": code, "message": message, "details": details}})}


def _ok(status: int, body: Any) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


class FakeJobApi:
    """The job API's routes over a dict. `scripts[job_id]` lists the statuses later GETs will show."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.by_idempotency_key: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __call__(self, event: dict, context: object) -> dict:
        self.requests.append(event)
        method, parts = event["httpMethod"], [p for p in event["path"].split("/") if p]
        if parts == ["jobs"] and method == "POST":
            return self._submit(event)
        if parts == ["jobs"] and method == "GET":
            return self._list(event.get("queryStringParameters") or {})
        if len(parts) == 2 and parts[0] == "jobs" and method in ("GET", "DELETE"):
            job = self.jobs.get(parts[1])
            if job is None:
                return _error(404, "job_not_found", f"no job {parts[1]}", job_id=parts[1])
            return self._get(job) if method == "GET" else self._cancel(job)
        if parts == ["pipelines"] and method == "GET":
            return _ok(200, {"pipelines": PIPELINES})
        return _error(404, "not_found", f"no route {method} {event['path']}")

    def _submit(self, event: dict) -> dict:
        key = (event.get("headers") or {}).get("Idempotency-Key")
        if key in self.by_idempotency_key:
            return _ok(202, self._summary(self.jobs[self.by_idempotency_key[key]]))
        request = json.loads(event["body"])
        known = [p["name"] for p in PIPELINES]
        if request["pipeline"] not in known:
            return _error(422, "unknown_pipeline", f"no pipeline {request['pipeline']!r}", field="pipeline",
                          allowed=known)
        if request.get("vcpus", 1) > 8:
            return _error(422, "does_not_fit", f"{request['vcpus']} vCPUs do not fit this lab's instance types",
                          field="vcpus", asked=request["vcpus"], available=8)
        for i, sample in enumerate(request.get("samples") or []):
            for j, uri in enumerate(sample.get("inputs") or []):
                if not uri.startswith("s3://in/"):
                    # As lambda/labbatch_api/admission.py names a sample: by its place in the list.
                    return _error(422, "input_outside_lab", f"samples[{i}].inputs[{j}]: {uri} is not in this "
                                  "lab's buckets", field=f"samples[{i}].inputs[{j}]", asked=uri)
        job_id = f"j-{next(self._ids):026d}"
        samples = request.get("samples")
        job = {"job_id": job_id, "pipeline": request["pipeline"], "queue": request.get("queue", "spot"),
               "status": "SUBMITTED", "status_reason": None, "attempts": [], "name": request.get("name"),
               "submitted_by": event["requestContext"]["identity"]["userArn"],
               "created_at": f"2026-11-25T00:00:{len(self.jobs):02d}Z",
               "output_prefix": f"s3://results/jobs/{job_id}/", "request": request,
               "vcpus": request.get("vcpus", 1), "memory_mib": request.get("memory_mib", 2048)}
        if samples:
            job["array_size"] = len(samples)
            job["children"] = {"SUBMITTED": len(samples)}
        self.jobs[job_id] = job
        if key:
            self.by_idempotency_key[key] = job_id
        return _ok(202, self._summary(job))

    @staticmethod
    def _summary(job: dict) -> dict:
        keys = ("job_id", "status", "output_prefix", "pipeline", "queue", "name", "created_at", "array_size")
        return {k: job.get(k) for k in keys}

    def _get(self, job: dict) -> dict:
        script = self.scripts.get(job["job_id"])
        if script:
            job.update(script.pop(0))
        return _ok(200, {k: v for k, v in job.items() if k != "request"})

    def _list(self, query: dict) -> dict:
        jobs = [j for j in reversed(list(self.jobs.values()))
                if query.get("status") in (None, j["status"]) and query.get("pipeline") in (None, j["pipeline"])]
        start = int(query.get("next_token") or 0)
        limit = int(query.get("limit") or 100)
        page = jobs[start:start + limit]
        token = str(start + limit) if start + limit < len(jobs) else None
        return _ok(200, {"jobs": [{k: v for k, v in j.items() if k != "request"} for j in page], "next_token": token})

    def _cancel(self, job: dict) -> dict:
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return _error(409, "job_finished", f"job {job['job_id']} already {job['status']}", status=job["status"])
        job.update(status="FAILED", status_reason="Cancelled by the user")
        return _ok(200, {"job_id": job["job_id"], "status": "FAILED", "action": "cancel"})


@pytest.fixture
def api() -> FakeJobApi:
    return FakeJobApi()


@pytest.fixture
def gateway_log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def gateway(api: FakeJobApi, gateway_log: io.StringIO) -> Iterator[LocalApiGateway]:
    with LocalApiGateway(api, region=REGION, credentials=(KEY, SECRET), caller_arn=CALLER, account_id=ACCOUNT,
                         log=gateway_log) as running:
        yield running


@pytest.fixture
def labbatch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LABBATCH_HOME and no endpoint or lab in the environment, whatever the developer's shell has."""
    home = tmp_path / "labbatch-home"
    monkeypatch.setenv("LABBATCH_HOME", str(home))
    for name in ("LABBATCH_ENDPOINT", "LABBATCH_LAB"):
        monkeypatch.delenv(name, raising=False)
    return home


def _write_local_state(home: Path, lab: str, api_url: str, *, key: str = KEY, secret: str = SECRET,
                       region: str = REGION) -> Path:
    """The file `labbatch local` writes: the JSON line it prints when ready."""
    path = home / "local" / f"{lab}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "api": api_url, "aws_endpoint": "http://127.0.0.1:1", "lab": lab, "region": region,
        "buckets": {"inputs": f"labbatch-{lab}-inputs", "references": f"labbatch-{lab}-references",
                    "results": f"labbatch-{lab}-results"},
        "credentials": {"access_key_id": key, "secret_access_key": secret},
    }))
    return path


@pytest.fixture
def write_local_state(labbatch_home: Path):
    """write_local_state(lab, api_url, **keys) -> the state file's path, in the test's LABBATCH_HOME."""
    return lambda lab, api_url, **keys: _write_local_state(labbatch_home, lab, api_url, **keys)


@pytest.fixture
def local_lab(gateway: LocalApiGateway, write_local_state) -> LocalApiGateway:
    """The fake API, found by the CLI as a running local lab called `example`."""
    write_local_state("example", gateway.url)
    return gateway
