"""Shared fixtures. Synthesizing is slow (jsii start-up), so every CDK test shares one app."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABS_DIR = ROOT / "labs"

# jsii runs on the first `node` on PATH: make it the pinned Node 22, however pytest was started.
os.environ["PATH"] = os.pathsep.join([str(ROOT / "node_modules" / ".bin"), os.environ.get("PATH", "")])
# The venv's `labbatch` is an editable install of one checkout (the main one): the processes the
# tests start (`labbatch local`, tes-proxy, token, ...) must run this checkout's code, as pytest
# itself does, or a worktree's end-to-end tests would test another tree's API and runner.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), str(ROOT / "lambda"), str(ROOT / "containers" / "runner"), str(ROOT / "containers" / "pipelines")]
    + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


@pytest.fixture(scope="session")
def cdk_context() -> dict:
    """The feature flags of cdk.json, so tests synthesize exactly what `cdk synth` does."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]
