"""A job that asked for GPUs checks it sees them before its tool runs (labbatch_contract.gpu_check):
the runner as Batch runs it, against a loopback moto S3."""

from __future__ import annotations

from labbatch_contract import gpu_check
from tests.runner.conftest import python_tool

TOOL = python_tool("print('basecalling on the GPU')")


def test_a_gpu_job_given_no_gpu_fails_before_its_tool_with_the_reason_in_log_and_manifest(lab):
    env = lab.runner_env(inputs=[], LABBATCH_GPUS="1")
    env.pop("NVIDIA_VISIBLE_DEVICES", None)
    env["PATH"] = "/usr/bin:/bin"  # no nvidia-smi on this machine's PATH either

    result = lab.run(TOOL, env)

    assert result.returncode == 1
    assert "basecalling on the GPU" not in result.stdout
    assert f"{gpu_check.FAILED_PREFIX} NVIDIA_VISIBLE_DEVICES is ''" in result.stdout
    manifest = lab.manifest()
    assert manifest["status"] == "failed" and manifest["failed_phase"] == "run"
    assert manifest["error"]["code"] == "no_gpu_visible"
    assert manifest["error"]["message"].startswith(gpu_check.FAILED_PREFIX)
    assert gpu_check.FAILED_PREFIX in lab.get(lab.prefix + "logs/tool.log").decode()


def test_a_gpu_job_handed_its_gpus_runs_its_tool_after_the_check(lab):
    env = lab.runner_env(inputs=[], LABBATCH_GPUS="1", NVIDIA_VISIBLE_DEVICES="GPU-5f1c")
    env["PATH"] = "/usr/bin:/bin"

    result = lab.run(TOOL, env)

    assert result.returncode == 0, result.stderr
    assert f"{gpu_check.OK_PREFIX} NVIDIA_VISIBLE_DEVICES=GPU-5f1c" in result.stdout
    assert "basecalling on the GPU" in result.stdout
    assert lab.manifest()["status"] == "succeeded"


def test_a_cpu_job_runs_no_gpu_check(lab):
    result = lab.run(TOOL, lab.runner_env(inputs=[]))

    assert result.returncode == 0, result.stderr
    assert "gpu check" not in result.stdout
