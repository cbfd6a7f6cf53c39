"""Nextflow's awsbatch task lines, run unchanged in tool images with no AWS CLI of their own.

With aws.batch.cliPath = /opt/labbatch/runner/bin/aws, Nextflow mounts /opt/labbatch/runner (two
levels above cliPath: AwsBatchTaskHandler.configJobDefRequest, `Paths.get(awscli).parent.parent`,
nextflow-io/nextflow 2aad02f, nf-amazon 3.10.2) read-only at the same path; the runner tree is
mounted exactly there here. The S3 is a local lab's (`labbatch local`).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.containers.conftest import BWA_IMAGE, DEMO_IMAGE, RUNNER_MOUNT, docker
from tests.e2e.conftest import start_local
from tests.nextflow_awsbatch import AwsBatchOptions, command_run, launch_command

CLI_PATH = f"{RUNNER_MOUNT}/bin/aws"
# The task: reads a staged file and a staged directory, writes a file and a directory.
TASK = """set -e
wc -l < reads.fq > lines.txt
mkdir -p out/nested
cp ref/genome.fa out/genome.fa
cp ref/sub/notes.txt out/nested/notes.txt
ls -1 ref ref/sub > out/listing.txt
"""
READS = "@r1\nACGT\n+\nIIII\n@r2\nGGCC\n+\nIIII\n"
GENOME = ">chr1\nACGTACGTACGT\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = start_local(tmp_path_factory.mktemp("nextflow-lab"))
    yield lab
    assert lab.stop() == 0


def _prepare(lab, options: AwsBatchOptions) -> tuple[str, str]:
    bucket = lab.info["buckets"]["results"]
    run = uuid.uuid4().hex[:8]
    work = f"s3://{bucket}/nextflow/work/{run[:2]}/{run}"
    lab.put("results", f"nextflow/inputs/{run}/reads.fq", READS.encode())
    lab.put("results", f"nextflow/inputs/{run}/ref/genome.fa", GENOME.encode())
    lab.put("results", f"nextflow/inputs/{run}/ref/sub/notes.txt", b"notes\n")
    inputs = {"reads.fq": f"s3://{bucket}/nextflow/inputs/{run}/reads.fq",
              "ref": f"s3://{bucket}/nextflow/inputs/{run}/ref"}
    key = work.removeprefix(f"s3://{bucket}/")
    lab.put("results", f"{key}/.command.run", command_run(options, work, inputs, ["lines.txt", "out"]).encode())
    lab.put("results", f"{key}/.command.sh", TASK.encode())
    return bucket, work


def _run(lab, image: str, options: AwsBatchOptions, work: str, runner_root: Path | None):
    creds = lab.info["credentials"]
    env = {"AWS_ENDPOINT_URL": lab.info["aws_endpoint"], "AWS_ACCESS_KEY_ID": creds["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": creds["secret_access_key"]}
    args = ["run", "--rm", "--network", "host"]
    if runner_root is not None:
        args += ["--volume", f"{runner_root}:{RUNNER_MOUNT}:ro"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return docker(*args, image, *launch_command(options, work), timeout=180)


def _text(lab, bucket: str, key: str) -> str:
    return lab.s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()


@pytest.mark.parametrize("image,options", [
    # Nextflow's defaults: the CLI's own retries (AWS_RETRY_MODE=standard, AWS_MAX_ATTEMPTS=5).
    (BWA_IMAGE, AwsBatchOptions(CLI_PATH, "us-east-1")),
    # aws.batch.retryMode = 'built-in': every download wrapped in nxf_cp_retry; SSE on every upload.
    (DEMO_IMAGE, AwsBatchOptions(CLI_PATH, "us-east-1", retry_mode=None, storage_encryption="AES256")),
], ids=["bwa-defaults", "demo-built-in-retry-sse"])
def test_nextflow_task_lines_stage_in_and_out_with_the_trees_aws(lab, runner_root, image, options):
    assert docker("run", "--rm", "--network", "none", image, "sh", "-c", "command -v aws").returncode != 0
    options = AwsBatchOptions(options.cli_path, lab.info["region"], options.retry_mode,
                              storage_encryption=options.storage_encryption)
    bucket, work = _prepare(lab, options)
    key = work.removeprefix(f"s3://{bucket}/")

    result = _run(lab, image, options, work, runner_root)

    assert result.returncode == 0, result.stdout + result.stderr
    assert _text(lab, bucket, f"{key}/lines.txt").strip() == "8"
    assert _text(lab, bucket, f"{key}/out/genome.fa") == GENOME  # the recursive upload of a directory
    assert _text(lab, bucket, f"{key}/out/nested/notes.txt") == "notes\n"
    assert _text(lab, bucket, f"{key}/out/listing.txt").split() == ["ref:", "genome.fa", "sub", "ref/sub:", "notes.txt"]
    assert _text(lab, bucket, f"{key}/.exitcode") == "0"
    assert _text(lab, bucket, f"{key}/.command.begin") == "start\n"
    assert "start" not in result.stderr and "error" not in result.stdout.lower()  # --only-show-errors
    log = _text(lab, bucket, f"{key}/.command.log")  # uploaded by the EXIT trap of the job's command
    assert "error" not in log.lower(), log
    if options.storage_encryption:
        head = lab.s3().head_object(Bucket=bucket, Key=f"{key}/out/genome.fa")
        assert head["ServerSideEncryption"] == "AES256"
    listed = lab.s3().list_objects_v2(Bucket=bucket, Prefix=f"{key}/")["Contents"]
    assert {o["Key"].removeprefix(f"{key}/") for o in listed} == {
        ".command.run", ".command.sh", ".command.begin", ".command.out", ".command.err", ".command.log", ".exitcode",
        "lines.txt", "out/genome.fa", "out/nested/notes.txt", "out/listing.txt"}


def test_a_failing_task_reports_its_exit_code_through_the_trees_aws(lab, runner_root):
    options = AwsBatchOptions(CLI_PATH, lab.info["region"])
    bucket, work = _prepare(lab, options)
    key = work.removeprefix(f"s3://{bucket}/")
    lab.put("results", f"{key}/.command.sh", b"echo no such sample >&2; exit 3\n")

    result = _run(lab, BWA_IMAGE, options, work, runner_root)

    assert result.returncode == 3, result.stdout + result.stderr
    assert _text(lab, bucket, f"{key}/.exitcode") == "3"
    assert _text(lab, bucket, f"{key}/.command.err") == "no such sample\n"


def test_the_same_lines_fail_without_the_tree_mounted(lab, images):
    options = AwsBatchOptions(CLI_PATH, lab.info["region"])
    bucket, work = _prepare(lab, options)
    key = work.removeprefix(f"s3://{bucket}/")

    result = _run(lab, BWA_IMAGE, options, work, None)

    assert result.returncode == 127, result.stdout + result.stderr
    assert f"{CLI_PATH}: No such file or directory" in result.stdout + result.stderr
    keys = {o["Key"] for o in lab.s3().list_objects_v2(Bucket=bucket, Prefix=f"{key}/")["Contents"]}
    assert keys == {f"{key}/.command.run", f"{key}/.command.sh"}  # nothing staged, nothing written


def test_the_trees_aws_runs_with_no_python_and_no_ca_bundle_in_the_image(runner_root):
    result = docker("run", "--rm", "--network", "none", "--volume", f"{runner_root}:{RUNNER_MOUNT}:ro",
                    "--env", "PYTHONPATH=/nowhere", "--env", "PYTHONHOME=/nowhere", BWA_IMAGE,
                    "sh", "-c", f'ls /etc/ssl/certs 2>&1 | head -1; {CLI_PATH} --version')
    assert result.returncode == 0, result.stderr
    first, version = result.stdout.splitlines()[0], result.stdout + result.stderr
    assert "No such file" in first  # bwa's image has no CA store at all
    assert "aws-cli/1.45.64" in version and "botocore/1.43.64" in version
