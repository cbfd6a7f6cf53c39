"""A TES task in a real tool image (labbatch-bwa:local, no Python) with the runner mounted: what
its executors write at absolute paths and in /tmp is on the scratch volume, not the image's layer.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

from tests.containers.conftest import BWA_IMAGE, DOCKER, RUNNER_LAUNCH, RUNNER_MOUNT

# Writes at /data (absent from the image) and in /tmp (empty in it), records the filesystem of
# each and of /scratch and /usr, then waits for the test to drop `go` into the host directory
# where it found /data/x: seeing it at /data/go proves /data is that directory.
SCRIPT = """set -e
echo "$1" > /data/x
echo "$1" > /tmp/y
stat -c '%n %d' /data/x /tmp/y /scratch /usr > /data/devices.txt
stat -c '%a' /tmp/ > /data/tmp-mode.txt
i=0
while [ ! -e /data/go ]; do i=$((i + 1)); [ "$i" -lt 1200 ] || exit 9; sleep 0.1; done
cat /data/go > /data/seen.txt
"""


def _found(scratch: Path, name: str, text: str) -> Path | None:
    for path in scratch.rglob(name):
        if path.is_file() and not path.is_symlink() and path.read_text().strip() == text:
            return path
    return None


def test_executor_writes_at_absolute_paths_and_in_tmp_land_in_the_attempts_scratch(runner_root, moto_s3, tmp_path):
    job = f"tes-{uuid.uuid4().hex[:8]}"
    marker, answer = uuid.uuid4().hex, uuid.uuid4().hex
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    results = f"s3://lab-results/tes/{job}"
    task = {"inputs": [{"path": "/data/run.sh", "content": SCRIPT}],
            "outputs": [{"path": f"/data/{name}", "url": f"{results}/{name}"}
                        for name in ("devices.txt", "tmp-mode.txt", "seen.txt")]
            + [{"path": "/data/*.txt", "url": f"{results}/all/", "path_prefix": "/data/"}],
            "executors": [{"command": ["sh", "/data/run.sh", marker], "workdir": "/tmp"}]}
    env = {"LABBATCH_JOB_ID": job, "LABBATCH_INPUTS": "[]", "LABBATCH_OUTPUT_PREFIX": f"s3://lab-results/jobs/{job}/",
           "LABBATCH_TES_TASK": json.dumps(task), "AWS_ENDPOINT_URL": moto_s3.endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    argv = [DOCKER, "run", "--rm", "--network", "host", "--volume", f"{runner_root}:{RUNNER_MOUNT}:ro",
            "--volume", f"{scratch}:/scratch", *(f"--env={k}={v}" for k, v in env.items()), BWA_IMAGE,
            *RUNNER_LAUNCH, "--"]
    container = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        data_x = tmp_y = None
        while (data_x is None or tmp_y is None) and container.poll() is None and time.monotonic() < deadline:
            data_x, tmp_y = _found(scratch, "x", marker), _found(scratch, "y", marker)
            time.sleep(0.2)
        assert data_x is not None and tmp_y is not None, f"not found under {scratch}"
        attempt = next(scratch.glob(f"labbatch/{job}/attempt-*"))
        assert attempt in data_x.parents and attempt in tmp_y.parents
        (data_x.parent / "go").write_text(answer)
        stdout, stderr = container.communicate(timeout=120)
    finally:
        if container.poll() is None:
            container.kill()
    assert container.returncode == 0, stdout + stderr

    def result(name: str) -> str:
        return moto_s3.client.get_object(Bucket="lab-results", Key=f"tes/{job}/{name}")["Body"].read().decode()

    assert result("seen.txt").strip() == answer
    devices = dict(line.rsplit(" ", 1) for line in result("devices.txt").splitlines())
    assert devices["/data/x"] == devices["/tmp/y"] == devices["/scratch"] != devices["/usr"], devices
    assert result("tmp-mode.txt").strip() == "1777"
    assert result("all/seen.txt") == result("seen.txt")  # the wildcard, through the /data link
    assert "task directory /usr" not in stderr  # named by no path of the task
    assert list(scratch.iterdir()) in ([], [scratch / "labbatch"]) and not list(scratch.rglob("x"))
