"""A loopback moto S3 that both boto3 and the runner's s5cmd subprocess can reach."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from labbatch_contract.references import CACHE_DIR_NAME

BUCKET = "lab-data"
RESULTS = "lab-results"


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns failures
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws_env(moto_endpoint: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "LABBATCH_"))
    }
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


@pytest.fixture(scope="session")
def s3(aws_env: dict[str, str]) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for bucket in (BUCKET, RESULTS):
        client.create_bucket(Bucket=bucket)
    return client


@dataclass
class RunnerResult:
    returncode: int
    stdout: str
    stderr: str
    prefix: str  # key prefix in RESULTS, ending in '/'
    scratch: Path

    def scratch_leftovers(self) -> list[Path]:
        """What the attempts left behind; the instance's reference cache stays on purpose."""
        cache = self.scratch / CACHE_DIR_NAME
        return sorted(p for p in self.scratch.rglob("*") if p != cache and cache not in p.parents)


@dataclass
class Lab:
    """One test's corner of the S3 buckets, and a way to run the runner as Batch would."""

    s3: Any
    env: dict[str, str]
    scratch: Path
    tag: str

    def put(self, key: str, body: bytes, **extra: Any) -> str:
        key = f"{self.tag}/{key}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body, **extra)
        return f"s3://{BUCKET}/{key}"

    @property
    def prefix(self) -> str:
        return f"jobs/{self.tag}/"

    def runner_env(self, *, inputs: list[str] | None = None, parameters: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        env.update(
            LABBATCH_JOB_ID=self.tag,
            LABBATCH_OUTPUT_PREFIX=f"s3://{RESULTS}/{self.prefix}",
            LABBATCH_SCRATCH_DIR=str(self.scratch),
            AWS_BATCH_JOB_ATTEMPT="1",
        )
        if inputs is not None:
            env["LABBATCH_INPUTS"] = json.dumps(inputs)
        if parameters is not None:
            env["LABBATCH_PARAMETERS"] = json.dumps(parameters)
        env.update(extra)
        return env

    def command(self, tool_argv: list[str], *, python_prelude: str | None = None) -> list[str]:
        if python_prelude is None:
            return [sys.executable, "-m", "labbatch_runner", "--", *tool_argv]
        # Runs the real runner in a process whose setup the test controls (see the no-space test).
        code = f"{python_prelude}\nfrom labbatch_runner.__main__ import main\nraise SystemExit(main())"
        return [sys.executable, "-c", code, "--", *tool_argv]

    def run(self, tool_argv: list[str], env: dict[str, str], *, python_prelude: str | None = None, timeout: float = 60) -> RunnerResult:
        completed = subprocess.run(
            self.command(tool_argv, python_prelude=python_prelude),
            env=env, capture_output=True, text=True, timeout=timeout,
        )
        return RunnerResult(completed.returncode, completed.stdout, completed.stderr, self.prefix, self.scratch)

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=RESULTS, Key=key)["Body"].read()

    def manifest(self, prefix: str | None = None) -> dict[str, Any]:
        return json.loads(self.get((prefix or self.prefix) + "manifest.json"))

    def result_keys(self, prefix: str | None = None) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=RESULTS, Prefix=prefix or self.prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture
def lab(s3: Any, aws_env: dict[str, str], tmp_path: Path) -> Lab:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return Lab(s3=s3, env=aws_env, scratch=scratch, tag=f"job-{uuid.uuid4().hex[:12]}")


def python_tool(code: str, *args: str) -> list[str]:
    """A tool for the runner to run: a few lines of Python with placeholder arguments."""
    return [sys.executable, "-c", code, *args]
