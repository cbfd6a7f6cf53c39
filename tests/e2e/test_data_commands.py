"""Issue 19 item 2 end to end in local mode: data in and out through the `labbatch` command alone.

`labbatch upload` (parallel, multipart for large files, SHA-256 checked against what S3 reports),
`labbatch results` (every output of every array child, checked against the runner's manifest; a
corrupted object is caught and not kept), `labbatch logs` (the tool's own error line of a failed
job and of a failed array child), and `labbatch submit` with local paths (uploaded first, said on
stderr), all against `labbatch local --no-containers` in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import LABBATCH, ROOT, RunningLab, start_local

# Copies every staged input to {output_dir}/<its key>: what goes in comes back out, byte for byte.
COPY_SCRIPT = """
import os, shutil, sys
out = sys.argv[1]
for path in sys.argv[2:]:
    key = path.split(os.sep + "inputs" + os.sep, 1)[1].split(os.sep, 1)[1]
    os.makedirs(os.path.dirname(os.path.join(out, key)), exist_ok=True)
    shutil.copyfile(path, os.path.join(out, key))
"""
COPY = {"image": "demo", "attempts": 1, "command": [sys.executable, "-c", COPY_SCRIPT, "{output_dir}", "{inputs}"]}
TICKS = {"image": "demo", "attempts": 1, "command": [
    sys.executable, "-c", "import time\nfor i in range(3):\n    print('tick %d' % i, flush=True); time.sleep(0.7)",
    "{input}"]}
SLOW = {"image": "demo", "attempts": 1, "command": [sys.executable, "-c", "import time; time.sleep(600)", "{input}"]}
BIG_BYTES = 50 * 1024 * 1024
SMALL_FILES = 100
GOOD_READS = b"@r1\nACGTACGT\n+\nIIIIIIII\n@r2\nGGCC\n+\nIIII\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    import yaml

    tmp = tmp_path_factory.mktemp("data")
    labs = tmp / "labs"
    labs.mkdir()
    config = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    config["pipelines"].update(copy=COPY, slow=SLOW, ticks=TICKS)
    (labs / "example.yaml").write_text(yaml.safe_dump(config))
    running = start_local(tmp, labs_dir=labs)
    yield running
    assert running.stop() == 0


def labbatch(lab: RunningLab, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LABBATCH_ENDPOINT"}
    env["LABBATCH_HOME"] = str(lab.home)
    return subprocess.run([LABBATCH, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def one_line_error(result: subprocess.CompletedProcess, code: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("labbatch: ")]
    assert lines and lines[-1].startswith(f"labbatch: {code}: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def submit(lab: RunningLab, *args: str, cwd: Path | None = None) -> tuple[str, subprocess.CompletedProcess]:
    result = ok(labbatch(lab, "submit", *args, "--json", cwd=cwd))
    return json.loads(result.stdout)["job_id"], result


def finished(lab: RunningLab, job_id: str, status: str = "SUCCEEDED") -> dict:
    with lab.client() as client:
        record = client.wait([job_id], timeout=90, interval=0.3)[job_id]
    assert record["status"] == status, record
    return record


def test_upload_and_results_round_trip_byte_identical(lab, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG_BYTES))
    folder = tmp_path / "reads"
    (folder / "lane2").mkdir(parents=True)
    small = {f"{'lane2/' if i % 4 == 0 else ''}part{i:03d}.txt": os.urandom(100 + i * 37) for i in range(SMALL_FILES)}
    for name, body in small.items():
        (folder / name).write_bytes(body)

    uploaded = ok(labbatch(lab, "upload", str(big), str(folder), "--to", "rt/"))
    uris = uploaded.stdout.split()
    inputs = lab.info["buckets"]["inputs"]
    assert uris[0] == f"s3://{inputs}/rt/big.bin"
    assert sorted(uris[1:]) == sorted(f"s3://{inputs}/rt/reads/{name}" for name in small)
    assert "101 files" in uploaded.stderr and "SHA-256" in uploaded.stderr
    # Multipart (50 MiB in 8 MiB parts), and S3 holds a SHA-256 for it.
    head = lab.s3().head_object(Bucket=inputs, Key="rt/big.bin", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-7") and head["ChecksumSHA256"]

    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps([{"name": "big", "inputs": uris[:1]}, {"name": "folder", "inputs": uris[1:]}]))
    job_id, _ = submit(lab, "copy", "--samples", str(samples))
    finished(lab, job_id)

    out = tmp_path / "out"
    fetched = ok(labbatch(lab, "results", job_id, "--to", str(out)))
    assert "sha256 verified" in fetched.stdout
    assert sha256((out / "big" / "rt" / "big.bin").read_bytes()) == sha256(big.read_bytes())
    for name, body in small.items():
        assert (out / "folder" / "rt" / "reads" / name).read_bytes() == body, name
    assert json.loads((out / "big" / "manifest.json").read_text())["status"] == "succeeded"
    assert not list(out.rglob("*.labbatch-part"))

    listed = json.loads(ok(labbatch(lab, "results", job_id, "--list", "--json")).stdout)
    assert len(listed["files"]) == SMALL_FILES + 1
    # A second run finds everything in place and intact, and writes the job's report beside it.
    again = ok(labbatch(lab, "results", job_id, "--to", str(out), "--report"))
    assert f"({SMALL_FILES + 1} already there)" in again.stdout
    assert f"Report: {out / 'report.html'}" in again.stdout
    page = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="labbatch-report-data">(.*?)</script>', page, re.S).group(1))
    staged = {s["sample"]: s["attempts"][-1]["bytes_in"] for s in data["samples"]}
    assert staged == {"big": BIG_BYTES, "folder": sum(len(b) for b in small.values())}


def test_corrupted_download_is_detected_and_not_kept(lab, tmp_path):
    data = tmp_path / "data.txt"
    data.write_bytes(b"precious bytes\n" * 1000)
    job_id, submitted = submit(lab, "copy", str(data))
    assert "labbatch: uploaded" in submitted.stderr
    record = finished(lab, job_id)
    manifest = lab.read_json(record["output_prefix"] + "manifest.json")
    [output] = manifest["outputs"]
    # The object changes behind the manifest's back: same size, other bytes.
    results_bucket = lab.info["buckets"]["results"]
    lab.s3().put_object(Bucket=results_bucket, Key=output["key"], Body=b"X" * output["size"])

    out = tmp_path / "out"
    line = one_line_error(labbatch(lab, "results", job_id, "--to", str(out)), "checksum_mismatch")
    assert output["path"] in line and "removed" in line
    assert not (out / output["path"]).exists()
    assert not list(out.rglob("*.labbatch-part"))


def test_submit_local_paths_and_logs_of_failures(lab, tmp_path):
    bad = tmp_path / "broken.fastq.gz"
    bad.write_bytes(b"not gzip at all\n")
    job_id, submitted = submit(lab, "fastq-stats", str(bad))
    assert f"labbatch: uploaded {bad}" in submitted.stderr and "/uploads/" in submitted.stderr
    finished(lab, job_id, "FAILED")
    logs = ok(labbatch(lab, "logs", job_id))
    assert "fastq-stats: error: input" in logs.stdout and "could not be read" in logs.stdout

    # A sample sheet naming local files, relative to the sheet; the same file is uploaded only once.
    sheet_dir = tmp_path / "sheet"
    sheet_dir.mkdir()
    (sheet_dir / "good.fastq").write_bytes(GOOD_READS)
    (sheet_dir / "samples.csv").write_text(f"name,inputs\ngood,good.fastq\nbad,{bad}\n")
    array_id, submitted = submit(lab, "fastq-stats", "--samples", str(sheet_dir / "samples.csv"), cwd=tmp_path)
    assert "labbatch: uploaded" in submitted.stderr and "not uploaded again" in submitted.stderr
    finished(lab, array_id, "FAILED")
    child = ok(labbatch(lab, "logs", array_id, "--child", "1"))
    assert "fastq-stats: error: input" in child.stdout
    assert "fastq-stats: error" not in ok(labbatch(lab, "logs", array_id, "--child", "0")).stdout
    # The good child's outputs still come down; the failed one is named and the exit says so.
    fetched = labbatch(lab, "results", array_id, "--to", str(tmp_path / "arr"))
    line = one_line_error(fetched, "job_failed")
    assert "child 1 (bad)" in line
    assert json.loads((tmp_path / "arr" / "good" / "stats.json").read_text())["reads"] == 2


def test_one_line_errors(lab, tmp_path):
    one_line_error(labbatch(lab, "upload", str(tmp_path / "missing.fq")), "no_such_file")
    one_line_error(labbatch(lab, "submit", "fastq-stats", str(tmp_path / "missing.fq")), "no_such_file")
    one_line_error(labbatch(lab, "submit", "fastq-stats", str(tmp_path)), "is_a_directory")
    one_line_error(labbatch(lab, "upload", str(tmp_path), "--to", "work/x"), "reserved_prefix")
    one_line_error(labbatch(lab, "results", "j-nosuchjob"), "no_such_job")
    one_line_error(labbatch(lab, "logs", "j-nosuchjob"), "no_such_job")

    reads = lab.put("inputs", "errors/reads.fastq", GOOD_READS)
    slow_id, _ = submit(lab, "slow", reads)
    one_line_error(labbatch(lab, "results", slow_id), "job_not_finished")
    with lab.client() as client:
        client.cancel(slow_id)
    job_id, _ = submit(lab, "fastq-stats", reads)
    record = finished(lab, job_id)
    bucket, key = record["output_prefix"].removeprefix("s3://").split("/", 1)
    lab.s3().delete_object(Bucket=bucket, Key=key + "manifest.json")
    one_line_error(labbatch(lab, "results", job_id), "no_manifest")
    one_line_error(labbatch(lab, "logs", job_id, "--child", "0"), "not_an_array_job")


def test_logs_follow_prints_lines_as_they_come_until_the_end(lab):
    reads = lab.put("inputs", "follow/reads.fastq", GOOD_READS)
    job_id, _ = submit(lab, "ticks", reads)
    followed = ok(labbatch(lab, "logs", job_id, "--follow", timeout=60))
    assert [line for line in followed.stdout.splitlines() if line.startswith("tick")] == ["tick 0", "tick 1", "tick 2"]
    with lab.client() as client:
        assert client.get(job_id)["status"] == "SUCCEEDED"
