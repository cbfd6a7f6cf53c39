"""The instance rehearsal's prerequisites: Docker, mmdebstrap, loop devices, the instance image.

Without one of them the rehearsal skips and says why, except under CI=true, where it fails
(as tests/containers/conftest.py does): .ci/run installs docker.io and mmdebstrap and starts
the engine. The instance image is built here when its inputs changed (containers/instance/
build.sh, cached: seconds when nothing changed, about 2 minutes the first time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labbatch.lab.loader import load_labs
from tests.conftest import LABS_DIR
from tests.rehearsal.instance import build_image

IN_CI = os.environ.get("CI") == "true"


def missing(reason: str) -> None:
    """Skip, saying why; under CI a missing prerequisite fails the rehearsal instead."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the instance rehearsal must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def instance_image() -> None:
    if os.geteuid() != 0:
        missing("the instance rehearsal needs root (loop devices, container capabilities)")
    try:
        answers = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answers = False
    if not answers:
        missing("no container engine answers ('docker info' failed)")
    if shutil.which("mmdebstrap") is None:
        missing("mmdebstrap is not installed (it builds the instance image)")
    if shutil.which("losetup") is None or not Path("/dev/loop-control").exists():
        missing("no loop devices here (/dev/loop-control): the instance needs a scratch block device")
    build_image()


@pytest.fixture(scope="session")
def example_compute(cdk_context) -> tuple[dict, int]:
    """The example lab's synthesized compute template (offline, as tests/cdk does) and its
    configured scratch size in GiB."""
    from tests.cdk.conftest import _synth

    lab, = [lab for lab in load_labs(LABS_DIR) if lab.name == "example"]
    return _synth(cdk_context, [lab])["example"].compute_json, lab.compute.scratch.size_gib
