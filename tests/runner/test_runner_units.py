"""The runner's pieces in-process: contract parsing, placeholders, checksums, scratch."""

from __future__ import annotations

import os
import shutil

import pytest

from labbatch_runner import scratch
from labbatch_runner.checksums import Checksum, expected_checksum
from labbatch_runner.contract import publishable_prefix, read_contract, select_sample
from labbatch_runner.errors import ExitCode, RunnerError
from labbatch_runner.placeholders import expand_argv
from labbatch_runner.s3uri import S3Uri

BASE_ENV = {
    "LABBATCH_JOB_ID": "job-1",
    "LABBATCH_INPUTS": '["s3://in/a.fq"]',
    "LABBATCH_OUTPUT_PREFIX": "s3://out/jobs/job-1/",
}


def _expand(template, inputs=("/in/a.fq", "/in/b.fq"), parameters=None):
    return expand_argv(list(template), inputs=list(inputs), parameters=parameters or {"ref": "/in/ref.fa"},
                       output_dir="/out", work_dir="/work")


def test_placeholders_expand_per_argument_without_a_shell():
    argv = _expand(["tool", "{inputs}", "--ref={param:ref}", "-o", "{output_dir}/x y.bam", "{input}", "{work_dir}", "awk {{print $1}}"])
    assert argv == ["tool", "/in/a.fq", "/in/b.fq", "--ref=/in/ref.fa", "-o", "/out/x y.bam", "/in/a.fq", "/work", "awk {print $1}"]


def test_inputs_placeholder_with_no_inputs_expands_to_nothing():
    assert _expand(["tool", "{inputs}", "x"], inputs=()) == ["tool", "x"]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("{outdir}", "unknown placeholder {outdir}"),
        ("{param:missing}", "parameter 'missing' is not set (parameters: ref)"),
        ("{param}", "{param} needs a name"),
        ("--in={inputs}", "{inputs} must be a whole argument"),
        ("{output_dir:x}", "unknown placeholder {output_dir:x}"),
    ],
)
def test_bad_placeholders_are_contract_errors(argument, message):
    with pytest.raises(RunnerError) as caught:
        _expand(["tool", argument])
    assert caught.value.code == ExitCode.CONTRACT and message in caught.value.message


def test_input_placeholder_without_inputs_is_refused():
    with pytest.raises(RunnerError, match="no inputs"):
        _expand(["tool", "{input}"], inputs=())


def test_shared_inputs_are_only_ever_the_shared_placeholders():
    argv = expand_argv(["tool", "{input}", "{inputs}", "--ref", "{shared_input}", "{shared_inputs}"],
                       inputs=["/in/own.fq"], shared_inputs=["/in/ref.fa", "/in/ref.fa.fai"], parameters={},
                       output_dir="/out", work_dir="/work")
    assert argv == ["tool", "/in/own.fq", "/in/own.fq", "--ref", "/in/ref.fa", "/in/ref.fa", "/in/ref.fa.fai"]


@pytest.mark.parametrize(("argument", "message"), [
    ("{shared_input}", "{shared_input} used but the job has no shared inputs"),
    ("-r={shared_inputs}", "{shared_inputs} must be a whole argument"),
])
def test_shared_placeholders_without_shared_inputs_are_contract_errors(argument, message):
    with pytest.raises(RunnerError) as caught:
        _expand(["tool", argument])
    assert caught.value.code == ExitCode.CONTRACT and message in caught.value.message


def test_an_array_child_gets_its_own_inputs_and_the_shared_ones_apart():
    env = {**BASE_ENV, "LABBATCH_SAMPLES_URI": "s3://in/samples.json", "AWS_BATCH_JOB_ARRAY_INDEX": "1",
           "LABBATCH_INPUTS": "[]", "LABBATCH_SHARED_INPUTS": '["s3://refs/g.fa"]'}
    samples = [{"name": "a", "inputs": ["s3://in/a.fq"]}, {"name": "b", "inputs": ["s3://in/b.fq"]}]
    child = select_sample(read_contract(["--", "tool"], env), samples)
    assert child.inputs == [S3Uri("in", "b.fq")]
    assert child.shared_inputs == [S3Uri("refs", "g.fa")]


def test_contract_reads_environment_and_finds_s3_parameters():
    env = dict(BASE_ENV, LABBATCH_PARAMETERS='{"reference": "s3://refs/g.fa", "mode": "fast"}', AWS_BATCH_JOB_ATTEMPT="2")
    contract = read_contract(["--", "tool", "x"], env)
    assert contract.command == ["tool", "x"]
    assert contract.inputs == [S3Uri("in", "a.fq")]
    assert contract.staged_parameters == {"reference": S3Uri("refs", "g.fa")}
    assert (contract.attempt, str(contract.scratch_dir)) == (2, "/scratch")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LABBATCH_JOB_ID": ""}, "LABBATCH_JOB_ID is not set"),
        ({"LABBATCH_OUTPUT_PREFIX": "s3://out/jobs/job-1"}, "must name a prefix ending in '/'"),
        ({"LABBATCH_OUTPUT_PREFIX": "s3://out/"}, "must name a prefix ending in '/'"),
        ({"LABBATCH_INPUTS": '{"a": 1}'}, "LABBATCH_INPUTS must be a JSON list"),
        ({"LABBATCH_INPUTS": '["https://x/y"]'}, "LABBATCH_INPUTS[0]: 'https://x/y' is not an s3:// URI"),
        ({"LABBATCH_INPUTS": '["s3://in/"]'}, "names a bucket, not an object or a folder"),
        ({"LABBATCH_PARAMETERS": '{"n": 3}'}, "LABBATCH_PARAMETERS.n must be a string"),
        ({"LABBATCH_SAMPLES_URI": "s3://in/samples.json"}, "AWS_BATCH_JOB_ARRAY_INDEX is not"),
    ],
)
def test_contract_errors_name_the_variable(change, message):
    with pytest.raises(RunnerError) as caught:
        read_contract(["--", "tool"], {**BASE_ENV, **change})
    assert caught.value.code == ExitCode.CONTRACT and message in caught.value.message


def test_empty_command_is_refused():
    with pytest.raises(RunnerError, match="no pipeline command"):
        read_contract(["--"], BASE_ENV)


def test_array_child_contract_overlays_parameters_and_extends_the_prefix():
    env = {**BASE_ENV, "LABBATCH_PARAMETERS": '{"mode": "fast", "keep": "yes"}',
           "LABBATCH_SAMPLES_URI": "s3://in/samples.json", "AWS_BATCH_JOB_ARRAY_INDEX": "1"}
    samples = [{"name": "a", "inputs": ["s3://in/a.fq"]},
               {"name": "b", "inputs": ["s3://in/b.fq"], "parameters": {"mode": "slow", "ref": "s3://refs/b.fa"}}]
    child = select_sample(read_contract(["--", "tool"], env), samples)
    assert child.sample == "b" and child.inputs == [S3Uri("in", "b.fq")]
    assert child.parameters == {"mode": "slow", "keep": "yes", "ref": "s3://refs/b.fa"}
    assert child.staged_parameters == {"ref": S3Uri("refs", "b.fa")}
    assert str(child.output_prefix) == "s3://out/jobs/job-1/b/"
    # A broken array child cannot know its prefix, so it must not write at the parent's.
    assert publishable_prefix(env) is None and str(publishable_prefix(BASE_ENV)) == "s3://out/jobs/job-1/"


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([{"name": "a", "inputs": []}], "has 1 samples"),
        ([{}, {"name": "../x", "inputs": []}], "name must be a non-empty path segment"),
        ([{}, {"name": "", "inputs": []}], "name must be a non-empty path segment"),
        ({"name": "a"}, "must be a JSON array"),
    ],
)
def test_bad_sample_lists_are_contract_errors(samples, message):
    env = {**BASE_ENV, "LABBATCH_SAMPLES_URI": "s3://in/samples.json", "AWS_BATCH_JOB_ARRAY_INDEX": "1"}
    with pytest.raises(RunnerError, match=".*") as caught:
        select_sample(read_contract(["--", "tool"], env), samples)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592"', "ChecksumCRC32": "NhCmhg==", "ChecksumSHA256": "abc="},
         Checksum("sha256", "abc=")),
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592"'}, Checksum("md5", "5d41402abc4b2a76b9719d911017c592")),
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592"', "ServerSideEncryption": "AES256"},
         Checksum("md5", "5d41402abc4b2a76b9719d911017c592")),
        # SSE-KMS: the ETag is not the MD5 of the bytes.
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592"', "ServerSideEncryption": "aws:kms"}, None),
        # Multipart without FULL_OBJECT: a checksum of part checksums, not of the file.
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592-7"', "ChecksumCRC32": "NmgB8Q=="}, None),
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592-7"', "ChecksumCRC32": "NmgB8Q==", "ChecksumType": "FULL_OBJECT"},
         Checksum("crc32", "NmgB8Q==")),
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592"', "ChecksumSHA256": "abc=-3"}, Checksum("md5", "5d41402abc4b2a76b9719d911017c592")),
    ],
)
def test_expected_checksum_uses_only_what_describes_the_whole_file(head, expected):
    assert expected_checksum(head) == expected


def test_local_input_paths_keep_bucket_and_key_and_refuse_escapes(tmp_path):
    assert scratch.local_input_path(tmp_path, S3Uri("b", "x/y/r.fq.gz")) == tmp_path / "b" / "x" / "y" / "r.fq.gz"
    with pytest.raises(ValueError, match="'..'"):
        scratch.local_input_path(tmp_path, S3Uri("b", "x/../../etc/passwd"))


def test_free_bytes_reports_the_filesystem_of_the_path(tmp_path):
    usage = shutil.disk_usage(tmp_path)
    assert abs(scratch.free_bytes(tmp_path) - usage.free) < 64 << 20  # other writers move it a little


def test_attempt_dirs_are_removed_with_their_empty_job_dir(tmp_path):
    attempt = scratch.AttemptDir.create(tmp_path, "job/1", 3, 2)
    assert attempt.root.parent.name == "job_1-3" and attempt.root.name.startswith("attempt-2-")
    (attempt.outputs / "ro").mkdir()
    (attempt.outputs / "ro" / "f").write_text("x")
    os.chmod(attempt.outputs / "ro", 0o500)
    attempt.remove()
    assert list(tmp_path.rglob("*")) == []


def test_sweep_removes_dead_attempts_and_spares_live_ones(tmp_path):
    live = scratch.AttemptDir.create(tmp_path, "live", None, 1)
    dead = scratch.AttemptDir.create(tmp_path, "dead", None, 1)
    (dead.inputs / "big.fq").write_text("x")
    os.close(dead._lock_fd)  # what SIGKILL does to the runner's lock
    dead._lock_fd = None
    assert scratch.sweep_stale_attempts(tmp_path) == [dead.root]
    assert not dead.root.parent.exists() and live.root.is_dir()
    live.remove()


def test_runner_imports_no_cdk_lambda_or_app_code():
    import subprocess
    import sys

    code = (
        "import sys, labbatch_runner.__main__, labbatch_runner.job\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'constructs', 'labbatch', 'lab_constructs', 'stacks'))\n"
        "print(bad)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_s5cmd_trusts_the_runner_trees_certificates_when_the_runner_runs_from_its_tree(tmp_path):
    from labbatch_runner.transfer import s5cmd_environment

    tree = tmp_path / "opt" / "labbatch" / "runner"
    (tree / "etc" / "ssl" / "certs").mkdir(parents=True)
    (tree / "etc" / "ssl" / "certs" / "ca-certificates.crt").write_text("bundle")
    prefix = str(tree / "usr")
    assert s5cmd_environment({"PATH": "/bin"}, prefix)["SSL_CERT_FILE"] == str(tree / "etc/ssl/certs/ca-certificates.crt")
    # A bundle the job chose wins; a host install (no tree) changes nothing.
    assert s5cmd_environment({"SSL_CERT_FILE": "/mine.pem"}, prefix)["SSL_CERT_FILE"] == "/mine.pem"
    assert "SSL_CERT_FILE" not in s5cmd_environment({}, str(tmp_path / "venv"))
