"""A lab run inside another program's process (the demo, a test) points that process's AWS SDK at
its emulator while it runs, and gives the process its own environment back when it stops: a later
boto3 client must not reach an emulator that is gone."""

from __future__ import annotations

import io
import os

import pytest

from labbatch.lab.loader import parse_lab
from labbatch.local.lab import LocalLab

LAB = {"name": "envlab", "pipelines": {"hello": {"image": "demo", "command": ["true"]}}}


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LABBATCH_HOME", str(tmp_path))
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token-of-the-callers-own")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BATCH", "AWS_ACCESS_KEY_ID", "LABBATCH_SETTINGS"):
        monkeypatch.delenv(name, raising=False)


def test_a_stopped_lab_leaves_the_process_environment_as_it_found_it(clean_environment):
    before = dict(os.environ)
    with LocalLab(parse_lab(LAB, "envlab.yaml"), executor="host", log=io.StringIO(), name=f"env-{os.getpid()}") as lab:
        assert os.environ["AWS_ENDPOINT_URL"] == lab.info["aws_endpoint"]
        assert os.environ["AWS_REGION"] == lab.info["region"] != "eu-north-1"
        assert "AWS_SESSION_TOKEN" not in os.environ and "LABBATCH_SETTINGS" in os.environ
    assert dict(os.environ) == before
