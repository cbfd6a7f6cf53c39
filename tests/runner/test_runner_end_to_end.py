"""The runner as Batch runs it: a real subprocess against a loopback moto S3."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import zlib

import boto3
import pytest
from botocore.config import Config

from tests.runner.conftest import BUCKET, RESULTS, python_tool

# Writes what the runner handed it into {output_dir}, so the test can see placeholders and paths.
RECORDING_TOOL = """
import json, os, pathlib, sys
out = pathlib.Path(sys.argv[1])
(out / "nested").mkdir()
(out / "argv.json").write_text(json.dumps(sys.argv[2:]))
(out / "nested" / "concat.bin").write_bytes(b"".join(pathlib.Path(p).read_bytes() for p in sys.argv[2:-1]))
print("tool says hello")
print("tool warns", file=sys.stderr)
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_happy_path_uploads_outputs_logs_and_an_exact_manifest(lab, moto_endpoint):
    reads = b"@r1\nACGT\n+\nIIII\n" * 50
    reference = b">chr1\nACGTACGT\n"
    annotations = b"chr1\t0\t8\n"
    reads_uri = lab.put("reads/sample 1.fq", reads)  # boto3's default checksum: CRC32
    reference_uri = lab.put("ref/genome.fa", reference, ChecksumAlgorithm="SHA256")
    # An object without additional checksums, as older clients upload it: only its ETag (MD5).
    legacy = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(request_checksum_calculation="when_required"),
    )
    legacy.put_object(Bucket=BUCKET, Key=f"{lab.tag}/ann.bed", Body=annotations)
    annotations_uri = f"s3://{BUCKET}/{lab.tag}/ann.bed"

    env = lab.runner_env(inputs=[reads_uri, annotations_uri], parameters={"reference": reference_uri, "mode": "fast"})
    result = lab.run(python_tool(RECORDING_TOOL, "{output_dir}", "{inputs}", "{param:reference}", "--mode={param:mode}"), env)

    assert result.returncode == 0, result.stderr
    assert "tool says hello" in result.stdout and "tool warns" in result.stdout
    assert result.scratch_leftovers() == []

    argv_seen = json.loads(lab.get(lab.prefix + "argv.json"))
    assert [os.path.basename(p) for p in argv_seen[:3]] == ["sample 1.fq", "ann.bed", "genome.fa"]
    assert argv_seen[3] == "--mode=fast"
    concat = reads + annotations + reference
    assert lab.get(lab.prefix + "nested/concat.bin") == concat
    assert sorted(lab.result_keys()) == sorted(
        lab.prefix + name for name in ("argv.json", "nested/concat.bin", "manifest.json", "logs/tool.log", "logs/runner.log")
    )
    tool_log = lab.get(lab.prefix + "logs/tool.log").decode()
    assert "tool says hello\n" in tool_log and "tool warns\n" in tool_log

    manifest = lab.manifest()
    argv_json = lab.get(lab.prefix + "argv.json")
    variable = {key: manifest.pop(key) for key in ("timings_seconds", "started_at", "finished_at", "peak_scratch_bytes", "peak_memory_bytes", "tool", "runner_version")}
    assert manifest == {
        "manifest_version": 1,
        "job_id": lab.tag,
        "array_index": None,
        "sample": None,
        "attempt": 1,
        "status": "succeeded",
        "failed_phase": None,
        "error": None,
        "exit_code": 0,
        "output_prefix": f"s3://{RESULTS}/{lab.prefix}",
        "parameters": {"reference": reference_uri, "mode": "fast"},
        "inputs": [
            {"uri": reads_uri, "size": len(reads), "used_as": ["inputs"], "cache": None,
             "checksum": {"algorithm": "crc32", "value": _b64(zlib.crc32(reads).to_bytes(4, "big")), "verified": True}},
            {"uri": annotations_uri, "size": len(annotations), "used_as": ["inputs"], "cache": None,
             "checksum": {"algorithm": "md5", "value": hashlib.md5(annotations).hexdigest(), "verified": True}},
            # A parameter's data is a reference: fetched into the instance's cache by this first job.
            {"uri": reference_uri, "size": len(reference), "used_as": ["parameter:reference"], "cache": "miss",
             "checksum": {"algorithm": "sha256", "value": _b64(hashlib.sha256(reference).digest()), "verified": True}},
        ],
        "outputs": [
            {"path": "argv.json", "key": lab.prefix + "argv.json", "size": len(argv_json), "sha256": _sha256(argv_json)},
            {"path": "nested/concat.bin", "key": lab.prefix + "nested/concat.bin", "size": len(concat), "sha256": _sha256(concat)},
        ],
        "logs": {"runner": f"s3://{RESULTS}/{lab.prefix}logs/runner.log", "tool": f"s3://{RESULTS}/{lab.prefix}logs/tool.log"},
        "transfer_engine": "s5cmd",
    }
    assert variable["tool"]["exit_code"] == 0 and variable["tool"]["signal"] is None
    assert variable["tool"]["argv"][-1] == "--mode=fast"
    assert set(variable["timings_seconds"]) == {"contract", "stage_in", "run", "stage_out", "total"}
    # Peak scratch covers at least the staged inputs and the outputs written from them.
    assert variable["peak_scratch_bytes"] >= 2 * len(concat)
    assert variable["peak_memory_bytes"]["tool"] > 1_000_000


def test_missing_input_fails_clearly_before_running_and_uploads_a_manifest(lab, tmp_path):
    present = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    missing = f"s3://{BUCKET}/{lab.tag}/reads/missing.fq"
    marker = tmp_path / "tool-ran"
    env = lab.runner_env(inputs=[present, missing])
    result = lab.run(python_tool("import pathlib, sys; pathlib.Path(sys.argv[1]).touch()", str(marker)), env)

    assert result.returncode == 65
    assert f"input {missing}: not found (404)" in result.stderr.splitlines()[-1]
    assert not marker.exists()
    assert result.scratch_leftovers() == []
    manifest = lab.manifest()
    assert manifest["status"] == "failed" and manifest["failed_phase"] == "stage_in"
    assert manifest["error"] == {"code": "input_unavailable", "message": f"input {missing}: not found (404)"}
    assert manifest["tool"]["exit_code"] is None
    assert f"input {missing}: not found (404)" in lab.get(lab.prefix + "logs/runner.log").decode()


def test_not_enough_scratch_is_refused_before_any_download(lab, tmp_path):
    big = lab.put("reads/big.fq", b"A" * 4096)
    download_marker = tmp_path / "download-attempted"
    # The real runner in a process where the scratch filesystem has 1,000 bytes free and any
    # download would leave a mark: the production code has no knob for either.
    prelude = f"""
import pathlib
import labbatch_runner.scratch as scratch, labbatch_runner.smallget as smallget, labbatch_runner.transfer as transfer
scratch.free_bytes = lambda path: 1000
def record_download(*args):
    pathlib.Path({str(download_marker)!r}).write_text("download attempted")
transfer.S5cmdEngine.download = transfer.Boto3Engine.download = smallget.get_to_file = record_download
"""
    result = lab.run(python_tool("pass"), lab.runner_env(inputs=[big]), python_prelude=prelude)

    expected = f"not enough scratch space on {lab.scratch}: inputs need 4,096 bytes, 1,000 bytes free"
    assert result.returncode == 66, result.stderr
    assert expected in result.stderr
    assert not download_marker.exists()
    assert result.scratch_leftovers() == []
    manifest = lab.manifest()
    assert manifest["failed_phase"] == "stage_in"
    assert manifest["error"] == {"code": "no_scratch_space", "message": expected}


def test_tool_failure_uploads_logs_and_manifest_cleans_scratch_and_propagates_exit_code(lab):
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    tool = python_tool(
        "import pathlib, sys\n"
        "pathlib.Path(sys.argv[1], 'partial.bam').write_bytes(b'half')\n"
        "print('aligning 1 read', flush=True)\n"
        "print('index is corrupt', file=sys.stderr)\n"
        "sys.exit(3)\n",
        "{output_dir}",
    )
    result = lab.run(tool, lab.runner_env(inputs=[reads]))

    assert result.returncode == 3
    assert "aligning 1 read" in result.stdout and "index is corrupt" in result.stdout
    assert result.scratch_leftovers() == []
    manifest = lab.manifest()
    assert manifest["status"] == "failed" and manifest["failed_phase"] == "run"
    # The tool's own last words: what a failed array child's reason shows.
    assert manifest["error"] == {"code": "tool_failed", "message": f"tool {tool[0]!r} exited with 3: index is corrupt"}
    assert manifest["tool"]["exit_code"] == 3 and manifest["exit_code"] == 3
    tool_log = lab.get(lab.prefix + "logs/tool.log").decode()
    assert "aligning 1 read" in tool_log and "index is corrupt" in tool_log
    # A failed tool's partial results are not published as if they were results.
    assert lab.prefix + "partial.bam" not in lab.result_keys()
    assert manifest["outputs"] == []


def test_sigterm_mid_run_stops_the_tool_cleans_scratch_and_exits_143(lab):
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    tool = python_tool("import os, time; print('tool-started', os.getpid(), flush=True); time.sleep(60)")
    runner = subprocess.Popen(
        lab.command(tool), env=lab.runner_env(inputs=[reads]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = runner.stdout.readline()
        assert line.startswith("tool-started"), line
        tool_pid = int(line.split()[1])
        assert any(lab.scratch.rglob("inputs/*/*/reads/a.fq")), "the input should be staged while the tool runs"
        runner.send_signal(signal.SIGTERM)
        returncode = runner.wait(timeout=20)
    finally:
        runner.kill()
        stderr = runner.stderr.read()
    assert returncode == 143, stderr
    with pytest.raises(ProcessLookupError):
        os.kill(tool_pid, 0)
    assert sorted(lab.scratch.rglob("*")) == []
    manifest = lab.manifest()
    assert manifest["status"] == "failed" and manifest["failed_phase"] == "terminated"
    assert manifest["error"] == {"code": "terminated", "message": "received SIGTERM during run"}
    assert manifest["exit_code"] == 143
    assert "tool-started" in lab.get(lab.prefix + "logs/tool.log").decode()


def test_array_child_picks_its_sample_and_writes_under_the_sample_prefix(lab):
    samples = []
    for index in range(3):
        uri = lab.put(f"reads/s{index}.fq", f"sample {index} reads".encode())
        sample = {"name": f"s{index}", "inputs": [uri]}
        if index == 1:
            sample["parameters"] = {"mode": "sensitive"}
        samples.append(sample)
    samples_uri = lab.put("samples.json", json.dumps(samples).encode())
    tool = python_tool(
        "import pathlib, sys; pathlib.Path(sys.argv[1], 'seen.txt').write_text(pathlib.Path(sys.argv[2]).read_text() + ' ' + sys.argv[3])",
        "{output_dir}", "{input}", "{param:mode}",
    )
    env = lab.runner_env(
        parameters={"mode": "fast"}, LABBATCH_SAMPLES_URI=samples_uri, AWS_BATCH_JOB_ARRAY_INDEX="1",
    )
    result = lab.run(tool, env)

    assert result.returncode == 0, result.stderr
    child_prefix = lab.prefix + "s1/"
    assert lab.get(child_prefix + "seen.txt") == b"sample 1 reads sensitive"
    assert all(key.startswith(child_prefix) for key in lab.result_keys())
    manifest = lab.manifest(child_prefix)
    assert (manifest["array_index"], manifest["sample"]) == (1, "s1")
    assert manifest["output_prefix"] == f"s3://{RESULTS}/{child_prefix}"
    assert [item["uri"] for item in manifest["inputs"]] == [samples[1]["inputs"][0]]
    assert manifest["parameters"] == {"mode": "sensitive"}


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_checksum_mismatch_fails_stage_in_without_running_the_tool(lab, tmp_path, algorithm):
    from moto.s3.models import s3_backends

    body = b"@r\nACGT\n+\nIIII\n"
    extra = {"ChecksumAlgorithm": "SHA256"} if algorithm == "sha256" else {}
    uri = lab.put("reads/a.fq", body, **extra)
    # S3 says one thing, the bytes say another: what a corrupted object or transfer looks like.
    stored = s3_backends["123456789012"]["aws"].buckets[BUCKET].keys[f"{lab.tag}/reads/a.fq"]
    if algorithm == "sha256":
        stored.checksum_value = wrong = _b64(hashlib.sha256(b"other").digest())
        actual = _b64(hashlib.sha256(body).digest())
        stored.checksum_algorithm = "SHA256"
    else:
        stored.checksum_value = None
        stored.checksum_algorithm = None
        stored._etag = wrong = hashlib.md5(b"other").hexdigest()
        actual = hashlib.md5(body).hexdigest()
    marker = tmp_path / "tool-ran"
    result = lab.run(python_tool("import pathlib, sys; pathlib.Path(sys.argv[1]).touch()", str(marker)), lab.runner_env(inputs=[uri]))

    expected = f"input {uri}: checksum mismatch ({algorithm}: expected {wrong}, got {actual})"
    assert result.returncode == 67, result.stderr
    assert expected in result.stderr.splitlines()[-1]
    assert f"{expected}, downloading again" in result.stderr
    assert not marker.exists()
    assert result.scratch_leftovers() == []
    manifest = lab.manifest()
    assert manifest["failed_phase"] == "stage_in"
    assert manifest["error"] == {"code": "checksum_mismatch", "message": expected}


def test_unknown_placeholder_is_refused_before_any_download(lab):
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    result = lab.run(python_tool("pass", "{outptu_dir}"), lab.runner_env(inputs=[reads]))

    assert result.returncode == 64
    assert "unknown placeholder {outptu_dir}" in result.stderr
    manifest = lab.manifest()
    assert manifest["failed_phase"] == "contract" and manifest["error"]["code"] == "contract"
    assert "stage_in" not in manifest["timings_seconds"] and manifest["inputs"] == []
    assert result.scratch_leftovers() == []


def test_missing_parameter_is_refused_before_any_download(lab):
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    result = lab.run(python_tool("pass", "{param:reference}"), lab.runner_env(inputs=[reads], parameters={"mode": "x"}))

    assert result.returncode == 64
    assert "parameter 'reference' is not set (parameters: mode)" in result.stderr
    assert "stage_in" not in lab.manifest()["timings_seconds"]


def test_tool_not_found_exits_127_with_a_manifest(lab):
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    result = lab.run(["no-such-tool-anywhere", "{input}"], lab.runner_env(inputs=[reads]))

    assert result.returncode == 127
    assert "tool 'no-such-tool-anywhere': not found" in result.stderr
    manifest = lab.manifest()
    assert (manifest["failed_phase"], manifest["error"]["code"]) == ("run", "tool_not_found")
    assert result.scratch_leftovers() == []


def test_many_small_inputs_in_one_directory_are_staged_and_verified(lab):
    bodies = [f"@r{i}\n{'ACGT' * (i + 1)}\n".encode() for i in range(6)]
    uris = [lab.put(f"run-7/r{i}.fq", body) for i, body in enumerate(bodies)]
    tool = python_tool(
        "import pathlib, sys; pathlib.Path(sys.argv[1], 'all.fq').write_bytes(b''.join(pathlib.Path(p).read_bytes() for p in sys.argv[2:]))",
        "{output_dir}", "{inputs}",
    )
    result = lab.run(tool, lab.runner_env(inputs=uris))

    assert result.returncode == 0, result.stderr
    assert lab.get(lab.prefix + "all.fq") == b"".join(bodies)
    assert "6 by GET, 0 by s5cmd" in result.stderr
    manifest = lab.manifest()
    assert [(item["uri"], item["size"]) for item in manifest["inputs"]] == [(uri, len(body)) for uri, body in zip(uris, bodies)]
    assert [item["checksum"]["value"] for item in manifest["inputs"]] == [
        _b64(zlib.crc32(body).to_bytes(4, "big")) for body in bodies
    ]
    assert all(item["checksum"]["verified"] for item in manifest["inputs"])


ENV_TOOL = """
import json, os, pathlib, sys
pathlib.Path(sys.argv[1], "env.json").write_text(json.dumps(dict(os.environ)))
"""


def test_the_tool_sees_its_container_environment_without_the_runner_contract(lab):
    env = lab.runner_env(inputs=[lab.put("reads/env.fq", b"@r\nA\n+\nI\n")], IMAGE_OWN_SETTING="kept",
                         AWS_BATCH_JOB_ID="batch-123")
    result = lab.run(python_tool(ENV_TOOL, "{output_dir}"), env)

    assert result.returncode == 0, result.stderr
    seen = json.loads(lab.get(lab.prefix + "env.json"))
    assert not [name for name in seen if name.startswith("LABBATCH_")]
    assert seen["IMAGE_OWN_SETTING"] == "kept" and seen["AWS_BATCH_JOB_ID"] == "batch-123"
    assert seen["TMPDIR"].startswith(str(lab.scratch)) and seen["PATH"] == env["PATH"]


def test_a_tool_may_write_its_own_logs_folder_but_not_the_runners_log_names(lab):
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    # As salmon quant -o does: its own log under logs/.
    own = python_tool("import pathlib, sys; d = pathlib.Path(sys.argv[1], 'logs'); d.mkdir();"
                      " (d / 'salmon_quant.log').write_text('mine')", "{output_dir}")
    result = lab.run(own, lab.runner_env(inputs=[reads]))
    assert result.returncode == 0, result.stderr
    assert lab.get(lab.prefix + "logs/salmon_quant.log") == b"mine"
    assert lab.prefix + "logs/runner.log" in lab.result_keys()

    clash = python_tool("import pathlib, sys; d = pathlib.Path(sys.argv[1], 'logs'); d.mkdir();"
                        " (d / 'tool.log').write_text('mine')", "{output_dir}")
    result = lab.run(clash, lab.runner_env(inputs=[reads], LABBATCH_OUTPUT_PREFIX=f"s3://{RESULTS}/{lab.prefix}clash/"))
    assert result.returncode == 69
    assert "output logs/tool.log: the name is reserved for the runner" in lab.manifest(f"{lab.prefix}clash/")["error"]["message"]


@pytest.mark.parametrize(("counted", "expected"), [(True, True), (False, False)])
def test_a_tool_the_oom_killer_ended_is_said_so_in_the_manifest(lab, tmp_path, counted, expected):
    # A stand-in for the container's memory cgroup (v2's memory.events); the tool plays the kernel:
    # it bumps the count (or not) and dies of SIGKILL.
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    bump = f"p.write_text(p.read_text().replace('oom_kill 0', 'oom_kill 1')); " if counted else ""
    tool = python_tool(f"import os, pathlib, signal; p = pathlib.Path({str(cgroup / 'memory.events')!r}); "
                       f"{bump}os.kill(os.getpid(), signal.SIGKILL)")
    prelude = f"import pathlib; from labbatch_runner import oomkills; oomkills.CGROUP_ROOT = pathlib.Path({str(cgroup)!r})"

    result = lab.run(tool, lab.runner_env(inputs=[reads]), python_prelude=prelude)

    assert result.returncode == 137
    manifest = lab.manifest()
    assert manifest["tool"]["signal"] == "SIGKILL" and manifest["tool"]["oom_killed"] is expected
    assert ("OOM killer" in manifest["error"]["message"]) is expected
