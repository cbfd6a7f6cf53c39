"""LabBatch as a user installs it: a wheel of the project in a fresh venv outside the checkout, with
the `local` extra docs/local-mode.md names, runs `labbatch local` and `labbatch demo` with nothing of
the checkout on its path (the Lambda packages, the lab files and the price table come from the
wheel), and says plainly what a wheel cannot do (strict IAM needs the CDK app of a checkout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((work / "dist").glob("labbatch-*.whl"))
    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    home, elsewhere = work / "home", work / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    # What a user's shell has, and nothing of this checkout (the suite's PYTHONPATH would show pip
    # the checkout's egg-info as an installed labbatch) or of the suite's own venv. pip's cache is
    # the machine's, so a second run installs the extra without downloading it again.
    env = {"HOME": str(home), "PATH": f"{python.parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{wheel}[local]"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return {"bin": python.parent, "env": env, "cwd": elsewhere}


def run(installed: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"] / "labbatch"), *args], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_the_installed_code_is_the_wheels_not_the_checkouts(installed):
    probe = subprocess.run([str(installed["bin"] / "python"), "-c",
                            "import labbatch, labbatch_api.handler, labbatch_contract, labbatch_runner;"
                            "print(labbatch.__file__, labbatch_api.handler.__file__)"],
                           cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert str(ROOT) not in probe.stdout and "site-packages" in probe.stdout


def test_the_demo_runs_from_the_wheel(installed):
    done = run(installed, "demo", "--samples", "2", "--reads", "200")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All results are right." in done.stdout


def test_labbatch_local_starts_from_the_wheel_with_iam_off_and_says_so(installed):
    process = subprocess.Popen([str(installed["bin"] / "labbatch"), "local", "--lab", "example", "--no-containers"],
                               cwd=installed["cwd"], env=installed["env"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        info = json.loads(process.stdout.readline())
        pipelines = subprocess.run([str(installed["bin"] / "labbatch"), "pipelines", "--endpoint", info["api"],
                                    "--json"], cwd=installed["cwd"], env=installed["env"], capture_output=True,
                                   text=True, timeout=60)
        assert pipelines.returncode == 0, pipelines.stderr
        assert {p["name"] for p in json.loads(pipelines.stdout)["pipelines"]} >= {"fastq-stats", "align"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert "IAM off" in stderr and "no CDK app" in stderr, stderr[-2000:]


def test_strict_iam_from_the_wheel_is_refused_naming_why(installed):
    done = run(installed, "local", "--lab", "example", "--iam", "strict", timeout=60)
    assert done.returncode == 1
    assert "no_cdk_app" in done.stderr and "--iam strict" in done.stderr and "--iam off" in done.stderr
