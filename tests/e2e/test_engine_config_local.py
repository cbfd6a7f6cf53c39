"""`labbatch engine-config` against a real local lab whose lab file has no TES (the example lab as
shipped): the lab's own `tes_disabled` answer, naming `tes.allowed_images` and what to add, and no
403 about the signature."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.e2e.conftest import LABBATCH


@pytest.mark.parametrize("argv", [["snakemake"], ["nextflow", "--tes"], ["py-tes"]])
def test_engine_config_on_a_lab_without_tes_says_how_to_turn_it_on(local_lab, argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["LABBATCH_HOME"] = str(local_lab.home)
    done = subprocess.run([LABBATCH, "engine-config", *argv, "--lab", local_lab.info["lab"]], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    assert "tes_disabled" in done.stderr and "tes.allowed_images" in done.stderr, done.stderr
    assert "tes: {allowed_images: [" in done.stderr and "restart `labbatch local`" in done.stderr
    assert "Bearer" not in done.stderr and "AWS4-HMAC-SHA256" not in done.stderr


def test_engine_config_nextflow_native_points_a_local_lab_user_to_tes(local_lab):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["LABBATCH_HOME"] = str(local_lab.home)
    done = subprocess.run([LABBATCH, "engine-config", "nextflow", "--lab", local_lab.info["lab"]], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "local_lab" in done.stderr and "engine-config nextflow --tes" in done.stderr
