"""Jobs Nextflow's awsbatch executor submits are LabBatch jobs: on a local lab (in containers), a job
definition registered and jobs submitted with the shapes Nextflow sends (nextflow-io/nextflow
2aad02f, nf-amazon 3.10.2: AwsBatchTaskHandler.configJobDefRequest, makeJobDefRequest,
createJobDef, newSubmitRequest, getEnvironmentVars; AwsBatchExecutor.s3Cmd) run the task's
`.command.run` with the runner tree's `aws`, and show up in `labbatch list` with their status
and, when one fails, its failure class, recorded by the status updater from Batch's events alone.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import boto3
import pytest

from tests.e2e.conftest import LABBATCH, start_local
from tests.e2e.test_local_containers import require_engine_and_images
from tests.nextflow_awsbatch import AwsBatchOptions, command_run, launch_command

IMAGE = "labbatch-bwa:local"
CLI_PATH = "/opt/labbatch/runner/bin/aws"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_engine_and_images(IMAGE)
    lab = start_local(tmp_path_factory.mktemp("nextflow-local"), containers=True)
    yield lab
    assert lab.stop() == 0


def _batch(lab):
    creds = lab.info["credentials"]
    return boto3.client("batch", endpoint_url=lab.info["batch_endpoint"], region_name=lab.info["region"],
                        aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])


def _register(batch, lab) -> str:
    """configJobDefRequest + makeJobDefRequest + createJobDef: name `nf-` + the image with
    [^a-zA-Z0-9-_] as '-', command 'true', 1 vCPU / 1024 MiB (overridden at submit), the job
    role, awslogs in aws.batch.logsGroup, the cliPath tree mounted as volume 'aws-cli', the
    nf-token parameter and the nextflow.io tags."""
    answer = batch.register_job_definition(
        jobDefinitionName="nf-labbatch-bwa-local", type="container",
        parameters={"nf-token": uuid.uuid4().hex},
        containerProperties={
            "image": IMAGE, "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "1024"}],
            "jobRoleArn": "arn:aws:iam::123456789012:role/labbatch-example-job",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-region": lab.info["region"],
                                                                     "awslogs-group": lab.info["log_group"]}},
            "mountPoints": [{"sourceVolume": "aws-cli", "containerPath": "/opt/labbatch/runner", "readOnly": True}],
            "volumes": [{"name": "aws-cli", "host": {"sourcePath": "/opt/labbatch/runner"}}]},
        tags={"nextflow.io/createdAt": "2026-12-07T01:00:00Z", "nextflow.io/version": "26.08.0-edge"})
    return f"{answer['jobDefinitionName']}:{answer['revision']}"


def _submit(batch, lab, definition: str, name: str, script: str) -> tuple[str, str]:
    options = AwsBatchOptions(CLI_PATH, lab.info["region"])
    bucket = lab.info["buckets"]["results"]
    run = uuid.uuid4().hex
    work = f"s3://{bucket}/nextflow/work/{run[:2]}/{run[2:]}"
    key = work.removeprefix(f"s3://{bucket}/")
    lab.put("results", f"{key}/.command.run", command_run(options, work, {}, ["out.txt"]).encode())
    lab.put("results", f"{key}/.command.sh", script.encode())
    queue = f"labbatch-{lab.info['lab']}-spot"
    answer = batch.submit_job(
        jobName=name, jobQueue=queue, jobDefinition=definition,
        tags={"labbatch:lab": lab.info["lab"]}, propagateTags=True,
        retryStrategy={"attempts": 3, "evaluateOnExit": [{"action": "RETRY", "onStatusReason": "Host EC2*"},
                                                         {"action": "EXIT", "onReason": "*"}]},
        containerOverrides={
            "command": launch_command(options, work),
            "resourceRequirements": [{"type": "MEMORY", "value": "512"}],
            "environment": [{"name": "AWS_RETRY_MODE", "value": "standard"},
                            {"name": "AWS_MAX_ATTEMPTS", "value": "5"},
                            {"name": "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "value": "5"}]})
    return answer["jobId"], key


def _listed(lab) -> list[dict]:
    env = {"LABBATCH_HOME": str(lab.home), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([LABBATCH, "list", "--lab", lab.info["lab"], "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    return listed["jobs"] if isinstance(listed, dict) else listed


def test_jobs_nextflow_submits_run_and_are_listed_with_their_failure_class(lab):
    batch = _batch(lab)
    definition = _register(batch, lab)
    good, good_key = _submit(batch, lab, definition, "nf-sayHello_1", "echo hello > out.txt\n")
    bad, _ = _submit(batch, lab, definition, "nf-broken_1", "echo no such sample >&2; exit 3\n")

    deadline = time.monotonic() + 240
    by_batch_id: dict[str, dict] = {}
    while time.monotonic() < deadline:
        by_batch_id = {j.get("batch_job_id"): j for j in _listed(lab)}
        if {by_batch_id.get(good, {}).get("status"), by_batch_id.get(bad, {}).get("status")} <= {"SUCCEEDED", "FAILED"} \
                and by_batch_id.get(bad, {}).get("failure"):
            break
        time.sleep(2)
    described = {j["jobId"]: j for j in batch.describe_jobs(jobs=[good, bad])["jobs"]}
    assert good in by_batch_id and bad in by_batch_id, (by_batch_id, described)

    ok, broken = by_batch_id[good], by_batch_id[bad]
    assert ok["status"] == "SUCCEEDED", (ok, described[good])
    assert ok["pipeline"] == "nextflow:nf-labbatch-bwa-local" and ok["queue"] == "spot"
    assert ok["name"] == "nf-sayHello_1" and ok["job_id"].startswith("j-")
    results = lab.info["buckets"]["results"]
    assert ok["output_prefix"] == f"s3://{results}/{good_key}/"  # the task's work directory
    body = lab.s3().get_object(Bucket=results, Key=f"{good_key}/out.txt")["Body"].read()
    assert body == b"hello\n"

    assert broken["status"] == "FAILED", (broken, described[bad])
    assert broken["failure"] == "application"  # the task's own exit code, not LabBatch's or AWS's
    assert described[bad]["tags"] == {"labbatch:lab": lab.info["lab"]} and described[bad]["propagateTags"] is True
    env = {"LABBATCH_HOME": str(lab.home), "PATH": "/usr/bin:/bin"}
    why = subprocess.run([LABBATCH, "why", broken["job_id"], "--lab", lab.info["lab"]], env=env,
                         capture_output=True, text=True, timeout=60)
    assert why.returncode == 0, why.stderr
    assert "FAILED (application)" in why.stdout and "last: exit 3" in why.stdout, why.stdout
    assert "/labbatch/example/jobs nf-labbatch-bwa-local/" in why.stdout  # aws.batch.logsGroup's stream
