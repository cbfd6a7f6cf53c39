"""Local Batch running the real runner and the real fastq-stats against a loopback moto S3.

The job definition is the one LabBatch deploys (`labbatch-runner -- fastq-stats ...`); only the
endpoints differ, given to the executor as the launcher gives them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import random

import boto3
import pytest
from test_batch_helpers import LAB_RETRY, SPOT_QUEUE, env_override, local_batch, wait_for

pytest.importorskip("labbatch_runner.__main__", reason="the runner's entry point is not written yet")

INPUTS, RESULTS = "lab-inputs", "lab-results"
FASTQ_STATS = {"name": "lab-fastq-stats", "memory_mib": 2048, "retry": LAB_RETRY,
               "command": ["labbatch-runner", "--", "fastq-stats", "{input}", "--output-dir", "{output_dir}"]}


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for bucket in (INPUTS, RESULTS):
        client.create_bucket(Bucket=bucket)
    return client


def launcher_env(s3_endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def simulated_fastq(seed: int, reads: int) -> tuple[str, dict]:
    rng = random.Random(seed)
    records, bases, gc, acgt, phred = [], 0, 0, 0, 0
    for number in range(reads):
        sequence = "".join(rng.choice("ACGTN") for _ in range(rng.randint(20, 80)))
        quality = "".join(chr(33 + rng.randint(2, 40)) for _ in sequence)
        records.append(f"@read{number}\n{sequence}\n+\n{quality}\n")
        bases += len(sequence)
        gc += sum(base in "GC" for base in sequence)
        acgt += sum(base in "ACGT" for base in sequence)
        phred += sum(ord(char) - 33 for char in quality)
    return "".join(records), {"reads": reads, "bases": bases, "gc_fraction": gc / acgt, "mean_quality": phred / bases}


def assert_stats(actual: dict, expected: dict) -> None:
    assert actual["reads"] == expected["reads"] and actual["bases"] == expected["bases"]
    assert actual["gc_fraction"] == pytest.approx(expected["gc_fraction"])
    assert actual["mean_quality"] == pytest.approx(expected["mean_quality"])


def test_fastq_stats_job_runs_the_real_runner_and_writes_exact_stats(tmp_path, s3, s3_endpoint):
    text, expected = simulated_fastq(seed=1, reads=200)
    s3.put_object(Bucket=INPUTS, Key="e2e/sample.fq", Body=text.encode())
    prefix = "jobs/e2e-plain/"
    with local_batch(tmp_path, [FASTQ_STATS], extra_env=launcher_env(s3_endpoint)) as (_, client, recorder):
        job_id = client.submit_job(jobName="stats", jobQueue=SPOT_QUEUE, jobDefinition="lab-fastq-stats",
                                   containerOverrides=env_override(
                                       LABBATCH_JOB_ID="e2e-plain",
                                       LABBATCH_INPUTS=json.dumps([f"s3://{INPUTS}/e2e/sample.fq"]),
                                       LABBATCH_PARAMETERS="{}",
                                       LABBATCH_OUTPUT_PREFIX=f"s3://{RESULTS}/{prefix}"))["jobId"]
        job = wait_for(client, job_id, timeout=90)
        leftovers = [path for path in (tmp_path / "scratch").rglob("*") if path.is_file()]

    logs = recorder.logs.get(job["attempts"][-1]["container"].get("logStreamName", ""), [])
    assert job["status"] == "SUCCEEDED", (job, logs)
    assert_stats(json.loads(s3.get_object(Bucket=RESULTS, Key=prefix + "stats.json")["Body"].read()), expected)
    manifest = json.loads(s3.get_object(Bucket=RESULTS, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["status"] == "succeeded" and manifest["attempt"] == 1
    assert leftovers == []  # the runner cleaned its attempt directory on the executor's scratch


def test_array_children_of_the_real_runner_each_take_their_sample(tmp_path, s3, s3_endpoint):
    samples, expected = [], {}
    for index, name in enumerate(("s1", "s2")):
        text, expected[name] = simulated_fastq(seed=10 + index, reads=50 + index)
        s3.put_object(Bucket=INPUTS, Key=f"e2e/{name}.fq", Body=text.encode())
        samples.append({"name": name, "inputs": [f"s3://{INPUTS}/e2e/{name}.fq"], "parameters": {}})
    s3.put_object(Bucket=RESULTS, Key="work/samples/e2e-array.json", Body=json.dumps(samples).encode())
    prefix = "jobs/e2e-array/"
    with local_batch(tmp_path, [FASTQ_STATS], extra_env=launcher_env(s3_endpoint)) as (_, client, _recorder):
        parent_id = client.submit_job(jobName="stats-array", jobQueue=SPOT_QUEUE, jobDefinition="lab-fastq-stats",
                                      arrayProperties={"size": 2},
                                      containerOverrides=env_override(
                                          LABBATCH_JOB_ID="e2e-array", LABBATCH_PARAMETERS="{}",
                                          LABBATCH_SAMPLES_URI=f"s3://{RESULTS}/work/samples/e2e-array.json",
                                          LABBATCH_OUTPUT_PREFIX=f"s3://{RESULTS}/{prefix}"))["jobId"]
        parent = wait_for(client, parent_id, timeout=90)

    assert parent["status"] == "SUCCEEDED", parent
    for name in ("s1", "s2"):
        body = s3.get_object(Bucket=RESULTS, Key=f"{prefix}{name}/stats.json")["Body"].read()
        assert_stats(json.loads(body), expected[name])


def test_tool_over_its_memory_is_oom_killed_while_the_runner_still_writes_its_manifest(tmp_path, s3, s3_endpoint):
    grows = "import time\nchunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20)); time.sleep(0.01)\n"
    hungry = {**FASTQ_STATS, "name": "lab-hungry", "memory_mib": 300,
              "command": ["labbatch-runner", "--", "python", "-c", grows]}
    prefix = "jobs/e2e-oom/"
    with local_batch(tmp_path, [hungry], extra_env=launcher_env(s3_endpoint)) as (_, client, _recorder):
        job_id = client.submit_job(jobName="oom", jobQueue=SPOT_QUEUE, jobDefinition="lab-hungry",
                                   containerOverrides=env_override(
                                       LABBATCH_JOB_ID="e2e-oom", LABBATCH_INPUTS="[]",
                                       LABBATCH_OUTPUT_PREFIX=f"s3://{RESULTS}/{prefix}"))["jobId"]
        job = wait_for(client, job_id, timeout=90)

    [attempt] = job["attempts"]  # the lab's rules do not retry an OOM kill
    assert attempt["container"]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert attempt["container"]["exitCode"] == 137
    # The watchdog killed the biggest process, the tool, as the OOM killer would: the runner lived on.
    manifest = json.loads(s3.get_object(Bucket=RESULTS, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["status"] == "failed" and manifest["exit_code"] == 137 and manifest["failed_phase"] == "run"


def test_the_runner_is_this_installs_whatever_path_puts_first(tmp_path, s3, s3_endpoint):
    """Tools follow PATH's order (a workflow engine's env may come first); the runner must not: a
    `labbatch-runner` earlier on PATH (another install) is never the one that runs."""
    import sys

    impostor = tmp_path / "other-install"
    impostor.mkdir()
    (impostor / "labbatch-runner").write_text("#!/bin/sh\necho the other install ran >&2\nexit 97\n")
    (impostor / "labbatch-runner").chmod(0o755)
    text, expected = simulated_fastq(seed=3, reads=50)
    s3.put_object(Bucket=INPUTS, Key="e2e/path-order.fq", Body=text.encode())
    prefix = "jobs/e2e-path-order/"
    path = os.pathsep.join([str(impostor), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with local_batch(tmp_path, [FASTQ_STATS], extra_env={**launcher_env(s3_endpoint), "PATH": path}) as (
            _, client, recorder):
        job_id = client.submit_job(jobName="stats", jobQueue=SPOT_QUEUE, jobDefinition="lab-fastq-stats",
                                   containerOverrides=env_override(
                                       LABBATCH_JOB_ID="e2e-path-order",
                                       LABBATCH_INPUTS=json.dumps([f"s3://{INPUTS}/e2e/path-order.fq"]),
                                       LABBATCH_PARAMETERS="{}",
                                       LABBATCH_OUTPUT_PREFIX=f"s3://{RESULTS}/{prefix}"))["jobId"]
        job = wait_for(client, job_id, timeout=90)
    logs = recorder.logs.get(job["attempts"][-1]["container"].get("logStreamName", ""), [])
    assert job["status"] == "SUCCEEDED", (job, logs)
    assert not any("the other install ran" in line for line in logs)
    assert_stats(json.loads(s3.get_object(Bucket=RESULTS, Key=prefix + "stats.json")["Body"].read()), expected)
