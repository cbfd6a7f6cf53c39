"""TES tasks on the host executor when no private /tmp can be made: the attempt does not start,
and its reason says why and what to do, in words that make the task a SYSTEM_ERROR.

Tasks that do run in a private /tmp: tests/e2e/test_tes_host.py.
"""

from __future__ import annotations

import json
import os

import pytest

from test_batch_helpers import LAB_RETRY, SPOT_QUEUE, env_override, local_batch, wait_for

from labbatch_status.failure_classes import AttemptEvidence, classify
from labbatch_contract.tes import task_state
from labbatch.local.batch.private_tmp import unshare_prefix

TES_DEFINITION = {"name": "lab-tes", "memory_mib": 256, "retry": LAB_RETRY, "command": ["labbatch-runner", "--"]}


def test_without_unshare_a_host_tes_task_never_starts_and_says_why(tmp_path):
    no_tools = tmp_path / "bin"  # a PATH without util-linux
    no_tools.mkdir()
    task = {"inputs": [{"path": "/tmp/x.sh", "content": "mkdir /tmp/conda\n"}],
            "executors": [{"command": ["/bin/bash", "/tmp/x.sh"], "workdir": "/tmp"}]}
    with local_batch(tmp_path, [TES_DEFINITION], extra_env={"PATH": str(no_tools)}) as (_, client, _recorder):
        job_id = client.submit_job(jobName="tes", jobQueue=SPOT_QUEUE, jobDefinition="lab-tes",
                                   containerOverrides=env_override(
                                       LABBATCH_JOB_ID="tes-no-unshare", LABBATCH_INPUTS="[]",
                                       LABBATCH_OUTPUT_PREFIX="s3://lab-results/jobs/tes-no-unshare/",
                                       LABBATCH_TES_TASK=json.dumps(task)))["jobId"]
        job = wait_for(client, job_id)
        leftovers = list((tmp_path / "scratch").rglob("*"))

    [attempt] = job["attempts"]
    reason = attempt["container"]["reason"]
    assert job["status"] == "FAILED" and job["statusReason"] == "Task failed to start"
    assert "unshare (util-linux) is not on PATH" in reason and "without --no-containers" in reason, reason
    assert leftovers == []
    failure = classify(status_reason=job["statusReason"], attempts=[AttemptEvidence(
        attempt["container"].get("exitCode"), reason, attempt["statusReason"])])
    assert task_state({"status": "FAILED", "failure": failure}) == "SYSTEM_ERROR"
    assert unshare_prefix(str(no_tools)) == (None, "unshare (util-linux) is not on PATH")


def test_what_the_launcher_lives_in_under_tmp_stays_visible_and_nothing_else(tmp_path):
    """A checkout or venv under the host's /tmp (a CI clone, often) must stay reachable at its own
    path in the private /tmp, or the attempt runs another install's runner or none at all."""
    import subprocess
    import tempfile
    from pathlib import Path

    from labbatch.local.batch.private_tmp import MOUNT_OVER_TMP, kept_host_entries

    prefix, why = unshare_prefix(os.environ.get("PATH", os.defpath))
    if prefix is None:
        pytest.skip(f"no private /tmp here: {why}")
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="launcher-") as launcher, \
            tempfile.TemporaryDirectory(dir="/tmp", prefix="other-") as other, \
            tempfile.TemporaryDirectory(dir="/tmp", prefix="scratch-") as scratch:
        (Path(launcher) / "bin").mkdir()
        (Path(launcher) / "bin" / "marker").write_text("the launcher's\n")
        (Path(other) / "secret").write_text("another user's\n")
        fresh = Path(scratch) / "attempts" / "task-1"
        fresh.mkdir(parents=True)
        env = {"PATH": f"{launcher}/bin{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": f"{scratch}/lib"}
        kept = kept_host_entries(env, fresh)
        assert Path(launcher).name in kept
        assert Path(other).name not in kept and Path(scratch).name not in kept  # never the fresh one's own
        seen = subprocess.run(
            [*prefix, "sh", "-c", MOUNT_OVER_TMP, str(fresh), str(len(kept)), *kept, "sh", "-c",
             f"cat {launcher}/bin/marker; ls /tmp; test -e {other}/secret && echo LEAK; touch /tmp/made-here"],
            capture_output=True, text=True, timeout=60)
        assert seen.returncode == 0, seen.stderr
        assert "the launcher's" in seen.stdout and "LEAK" not in seen.stdout
        assert sorted(seen.stdout.split()[2:]) == sorted(kept)  # ls before the touch
        assert (fresh / "made-here").exists() and not Path("/tmp/made-here").exists()
