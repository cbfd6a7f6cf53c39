"""The GPU check (labbatch_contract.gpu_check) run for real in a job image, as the runner runs it
before a GPU job's tool: what `labbatch doctor`'s GPU canary proves on a GPU pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from labbatch_contract import gpu_check
from tests.containers.conftest import DEMO_IMAGE, image_id, missing, run_in


@pytest.fixture(scope="module")
def demo_image(engine: str) -> str:
    if image_id(DEMO_IMAGE) is None:
        missing(f"image {DEMO_IMAGE} not built (run `make images`)")
    return DEMO_IMAGE


def _fake_nvidia_smi(tmp_path: Path, body: str) -> dict[Path, str]:
    """An `nvidia-smi` on the image's PATH: the demo image has none, as most bioinformatics images."""
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return {tool: "/usr/local/bin/nvidia-smi"}


def test_no_gpu_visible_fails_with_the_reason_when_nvidia_visible_devices_is_unset(demo_image):
    result = run_in(demo_image, gpu_check.argv())

    assert result.returncode == 1
    assert f"{gpu_check.FAILED_PREFIX} NVIDIA_VISIBLE_DEVICES is ''" in result.stderr
    assert "ECS GPU AMI" in result.stderr


@pytest.mark.parametrize("spelling", ["void", "none"])
def test_the_nvidia_runtimes_own_no_gpu_spellings_fail_too(demo_image, spelling):
    result = run_in(demo_image, gpu_check.argv(), env={"NVIDIA_VISIBLE_DEVICES": spelling})

    assert result.returncode == 1
    assert f"NVIDIA_VISIBLE_DEVICES is '{spelling}'" in result.stderr


def test_the_devices_the_ecs_agent_hands_over_pass_without_nvidia_smi(demo_image):
    result = run_in(demo_image, gpu_check.argv(), env={"NVIDIA_VISIBLE_DEVICES": "GPU-5f1c0e9a"})

    assert result.returncode == 0, result.stderr
    assert f"{gpu_check.OK_PREFIX} NVIDIA_VISIBLE_DEVICES=GPU-5f1c0e9a" in result.stdout


def test_nvidia_smi_lists_the_gpu_when_the_image_has_it(demo_image, tmp_path):
    smi = _fake_nvidia_smi(tmp_path, 'echo "GPU 0: NVIDIA A10G (UUID: GPU-5f1c0e9a)"')

    result = run_in(demo_image, gpu_check.argv(), volumes=smi, env={"NVIDIA_VISIBLE_DEVICES": "all"})

    assert result.returncode == 0, result.stderr
    assert f"{gpu_check.OK_PREFIX} nvidia-smi lists" in result.stdout and "GPU 0: NVIDIA A10G" in result.stdout


def test_nvidia_smi_that_sees_no_gpu_fails_even_with_the_variable_set(demo_image, tmp_path):
    # The variable says GPUs were asked for; nvidia-smi says what the container really got.
    smi = _fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA '
                                     'driver."; exit 9')

    result = run_in(demo_image, gpu_check.argv(), volumes=smi, env={"NVIDIA_VISIBLE_DEVICES": "all"})

    assert result.returncode == 1
    assert f"{gpu_check.FAILED_PREFIX} nvidia-smi lists no GPU: NVIDIA-SMI has failed" in result.stderr
