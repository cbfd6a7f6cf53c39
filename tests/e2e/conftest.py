"""Local mode as a user starts it: `labbatch local` in a subprocess, driven over signed HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from labbatch.client.sdk import LabBatchClient

ROOT = Path(__file__).resolve().parents[2]
LABBATCH = str(Path(sys.executable).parent / "labbatch")
# A pipeline that runs until stopped, for cancel and reclaim tests; and one that sleeps briefly,
# so spot reclaims land while it runs.
SLOW = {"image": "demo", "command": [sys.executable, "-c",
                                     "import time; print('started', flush=True); time.sleep(600)"],
        "attempts": 1}
BRIEF_STATS = {"image": "demo", "attempts": 3, "command": [
    "sh", "-c", 'sleep 1 && exec fastq-stats "$0" --output-dir "$1"', "{input}", "{output_dir}"]}
# Statistics of each sample's own reads, and of the reads every sample shares under shared/.
SHARED_STATS = {"image": "demo", "attempts": 1, "command": [
    "sh", "-c", 'fastq-stats "$0" --output-dir "$2" && mkdir "$2/shared" && fastq-stats "$1" --output-dir "$2/shared"',
    "{input}", "{shared_input}", "{output_dir}"]}
# Takes `mib` MiB of resident memory, 32 MiB at a time (so the executor's memory watchdog, not
# the allocator, stops it), then writes what it held: for out-of-memory kills and their recovery.
HOG_SCRIPT = """
import json, os, sys, time
mib, out = int(sys.argv[1]), sys.argv[2]
held = []
while len(held) * 32 < mib:
    held.append(b"\\x01" * (32 * 1024 * 1024))
    time.sleep(0.02)
with open(os.path.join(out, "held.json"), "w") as f:
    json.dump(dict(mib=len(held) * 32), f)
"""
HOG = {"image": "demo", "attempts": 1, "memory_mib": 1024, "parameters": {"mib": None},
       "command": [sys.executable, "-c", HOG_SCRIPT, "{param:mib}", "{output_dir}"]}


@dataclass
class RunningLab:
    process: subprocess.Popen
    info: dict
    home: Path

    def __post_init__(self) -> None:
        # Drained all along: a lab whose stderr pipe fills up blocks on its next log line.
        self._stderr: list[str] = []
        if self.process is None or self.process.stderr is None:
            self._drain = threading.Thread(target=lambda: None)
            return
        self._drain = threading.Thread(target=lambda: self._stderr.extend(iter(self.process.stderr.readline, "")),
                                       daemon=True)
        self._drain.start()

    def stderr_text(self) -> str:
        """Everything the lab wrote to stderr; whole once it has stopped."""
        if self.process.poll() is not None:
            self._drain.join(timeout=10)
        return "".join(self._stderr)

    def stderr_once(self, text: str, within: float = 30.0) -> str:
        """The lab's stderr as soon as it holds `text`. Its start-up lines follow the JSON line on
        stdout, so a test that reads them right after the start may be ahead of them. All of it
        after `within` seconds, or once the lab has stopped, whatever it holds."""
        deadline = time.monotonic() + within
        while text not in self.stderr_text() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.stderr_text()

    def client(self, secret: str | None = None) -> LabBatchClient:
        creds = self.info["credentials"]
        return LabBatchClient(self.info["api"], region=self.info["region"],
                              credentials=(creds["access_key_id"], secret or creds["secret_access_key"]))

    def s3(self):
        creds = self.info["credentials"]
        return boto3.client("s3", endpoint_url=self.info["aws_endpoint"], region_name=self.info["region"],
                            aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])

    def put(self, kind: str, key: str, body: bytes) -> str:
        bucket = self.info["buckets"][kind]
        self.s3().put_object(Bucket=bucket, Key=key, Body=body)
        return f"s3://{bucket}/{key}"

    def read_json(self, uri: str) -> dict:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return json.loads(self.s3().get_object(Bucket=bucket, Key=key)["Body"].read())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Where it is stuck: `labbatch local` dumps every thread's stack on SIGUSR1.
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(3)
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError("labbatch local did not stop within 60 s of SIGTERM; its threads and last "
                                 f"words:\n{self.stderr_text()[-12000:]}") from None


def test_labs_dir(tmp_path: Path) -> Path:
    """The example lab plus the test pipelines above."""
    labs = tmp_path / "labs"
    labs.mkdir(exist_ok=True)
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["pipelines"]["slow"] = SLOW
    data["pipelines"]["brief-stats"] = BRIEF_STATS
    data["pipelines"]["hog"] = HOG
    data["pipelines"]["shared-stats"] = SHARED_STATS
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return labs


def start_local(tmp_path: Path, *extra: str, labs_dir: Path | None = None, containers: bool = False,
                home: Path | None = None, env: dict[str, str] | None = None) -> RunningLab:
    """`labbatch local` on the test labs; on the host executor unless `containers` (these tests'
    pipelines run the host's own Python). `env`: the lab's environment instead of this one's."""
    home = home or tmp_path / "home"
    env = {k: v for k, v in (os.environ if env is None else env).items() if not k.startswith("AWS_")}
    env["LABBATCH_HOME"] = str(home)
    # The runner image's extracted tree is a cache keyed by the image id: one for the whole run.
    env.setdefault("LABBATCH_RUNNER_TREES", str(Path(tempfile.gettempdir()) / "labbatch-test-runner-trees"))
    # Strict IAM reads the lab's synthesized templates: synthesized once per lab variant for the run.
    env.setdefault("LABBATCH_ASSEMBLY_CACHE", str(Path(tempfile.gettempdir()) / "labbatch-test-assemblies"))
    process = subprocess.Popen(
        [LABBATCH, "local", "--labs-dir", str(labs_dir or test_labs_dir(tmp_path)),
         *(() if containers else ("--no-containers",)), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"labbatch local did not start: {process.stderr.read()}")
    return RunningLab(process, json.loads(line), home)


@pytest.fixture(scope="module")
def local_lab(tmp_path_factory):
    lab = start_local(tmp_path_factory.mktemp("local"))
    yield lab
    assert lab.stop() == 0
