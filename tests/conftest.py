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


@pytest.fixture(scope="session")
def cdk_context() -> dict:
    """The feature flags of cdk.json, so tests synthesize exactly what `cdk synth` does."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]
