"""#24 item 2 on the rehearsal instance: jobs started as the ECS agent starts them.

One instance boots the synthesized launch template's user data with the *real* runner image in
its registry (the boot unpacks the tree from it), then its agent stand-in
(containers/instance/ecs_agent.py) starts jobs from the lab's synthesized job definitions and the
job API's own SubmitJob requests, through labbatch_contract.batch_container, the translation local
mode uses. Jobs reach S3 (moto, on the Docker bridge's gateway) over the instance's network, as
host-networked Batch jobs reach it through the VPC. Checked against what the test computes:
reads counted, reads mapped by bwa in the bare Debian image (no Python, no shell of ours), an
array's children each on their own sample, an over-memory kill seen from inside, and a spot
interruption stopping a running job as ECS's draining does.
"""

from __future__ import annotations

import copy
import gzip
import json
import time

import pytest
import yaml

from labbatch_api.admission import admit
from labbatch_api.batch_requests import batch_job_name, submit_job_request
from labbatch_api.job_models import SubmitJobRequest
from labbatch_contract import batch_submit, runner_env
from labbatch_contract import tes as tes_rules
from labbatch_contract.ids import new_job_id
from labbatch_contract.names import output_prefix, samples_key
from labbatch_contract.settings import LabSettings
from labbatch.lab.api_settings import handler_settings
from labbatch.lab.loader import parse_lab

from tests.cdk.conftest import _synth
from tests.conftest import LABS_DIR, ROOT
from tests.e2e.test_local_containers import PIPELINES, primary_mapped, reads_of, simulated_sample
from tests.rehearsal.instance import Instance, launch_template_user_data
from tests.rehearsal.jobs import (Spool, agent_environment, bridge_gateway, deployed_definitions, registry_storage,
                                  wait_for_file)

pytestmark = [pytest.mark.usefixtures("instance_image"), pytest.mark.xdist_group("rehearsal")]

ACCOUNT, REGION = "111122223333", "us-east-1"
RUNNER = "localhost:5000/labbatch/runner:real"
IMAGES = {"labbatch/runner:real": "labbatch-runner:local", "labbatch/demo:real": "labbatch-demo:local",
          "labbatch/bwa:real": "labbatch-bwa:local"}
# Definitions' images as the deploy gives them -> the instance registry's copies.
DEFINITION_IMAGES = {"demo": "localhost:5000/labbatch/demo:real", "labbatch-bwa:local": "localhost:5000/labbatch/bwa:real"}
AGENT_BOUND = 180.0  # boot, tree from a 190 MB image, agent up
JOB_BOUND = 240.0


@pytest.fixture(scope="module")
def lab_data() -> dict:
    data = yaml.safe_load((LABS_DIR / "example.yaml").read_text())
    data["pipelines"].update(copy.deepcopy({name: PIPELINES[name] for name in ("bwa-flagstat", "hog", "sleeper")}))
    return data


@pytest.fixture(scope="module")
def synthesized_lab(cdk_context, lab_data):
    lab = parse_lab(lab_data, "example.yaml")
    return lab, _synth(cdk_context, [lab])["example"].compute_json


@pytest.fixture(scope="module")
def s3():
    import boto3
    from moto.server import ThreadedMotoServer

    gateway = bridge_gateway()
    server = ThreadedMotoServer(ip_address=gateway, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    yield endpoint, client
    server.stop()


class Submitter:
    """SubmitJob requests as the deployed API builds them (admission, then the request)."""

    def __init__(self, lab, s3_client, definitions: dict, spool: Spool, endpoint: str) -> None:
        self.settings = LabSettings.model_validate(handler_settings(lab, ACCOUNT, REGION))
        self.s3 = s3_client
        self.definitions = definitions
        self.spool = spool
        self.endpoint = endpoint
        for bucket in (self.settings.buckets.inputs, self.settings.buckets.references, self.settings.buckets.results):
            s3_client.create_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, body: bytes) -> str:
        name = getattr(self.settings.buckets, bucket)
        self.s3.put_object(Bucket=name, Key=key, Body=body)
        return f"s3://{name}/{key}"

    def read(self, uri: str) -> bytes:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def submit(self, body: dict, **overrides) -> tuple[str, list[str]]:
        """Hands the job's attempt(s) to the agent; returns (output prefix, task ids)."""
        job = admit(SubmitJobRequest.model_validate(body), self.settings, self.s3)
        job_id = new_job_id()
        prefix = output_prefix(self.settings.buckets.results, job_id)
        samples_uri = None
        if job.array_samples:
            self.s3.put_object(Bucket=self.settings.buckets.inputs, Key=samples_key(job_id),
                               Body=json.dumps([s.as_json() for s in job.array_samples]).encode())
            samples_uri = f"s3://{self.settings.buckets.inputs}/{samples_key(job_id)}"
        request = submit_job_request(job, lab=self.settings.lab, job_id=job_id,
                                     job_name=batch_job_name(job.name, job.pipeline_name),
                                     job_output_prefix=prefix, samples_uri=samples_uri)
        container_overrides = {**request["containerOverrides"], **overrides}
        batch_job_id = f"rehearsal-{job_id.lower()}"
        indexes = range(request["arrayProperties"]["size"]) if "arrayProperties" in request else [None]
        tasks = [self.spool.hand({
            "definition": self.definitions[request["jobDefinition"]],
            "overrides": container_overrides, "parameters": request.get("parameters", {}),
            "context": {"job_id": batch_job_id if index is None else f"{batch_job_id}:{index}", "attempt": 1,
                        "compute_environment": "labbatch-example-on-demand", "job_queue": request["jobQueue"],
                        "array_index": index},
            "agent_environment": agent_environment(self.endpoint)}) for index in indexes]
        return prefix, tasks


@pytest.fixture(scope="module")
def instance(instance_image, synthesized_lab, s3, tmp_path_factory):
    lab, template = synthesized_lab
    storage = registry_storage(IMAGES)
    spool_dir = tmp_path_factory.mktemp("spool")
    agent_dir = tmp_path_factory.mktemp("agent")
    (agent_dir / "ecs_agent.py").write_bytes((ROOT / "containers" / "instance" / "ecs_agent.py").read_bytes())
    booted = Instance("rehearsal-jobs", launch_template_user_data(template, RUNNER),
                      scratch_gib=lab.compute.scratch.size_gib,
                      volumes=[f"{storage}:/var/lib/docker-registry", f"{spool_dir}:/var/lib/ecs/rehearsal",
                               f"{agent_dir / 'ecs_agent.py'}:/opt/labbatch-rehearsal/ecs_agent.py:ro",
                               f"{ROOT / 'labbatch_contract'}:/opt/labbatch-rehearsal/labbatch_contract:ro"])
    booted.start()
    try:
        ready = wait_for_file(spool_dir / "agent-ready", AGENT_BOUND)
        assert ready, f"the agent did not start within {AGENT_BOUND} s:\n{booted.diagnostics()}"
        endpoint, client = s3
        definitions = deployed_definitions(template, DEFINITION_IMAGES)
        yield booted, Submitter(lab, client, definitions, Spool(spool_dir), endpoint)
    finally:
        booted.remove()


def test_the_boot_unpacks_the_real_runner_tree_before_the_agent_starts(instance):
    booted, _ = instance
    assert booted.sh("cat /run/ecs-agent-started").stdout.split()[-1] == "tree=complete"
    launch = booted.sh("/opt/labbatch/runner/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path "
                       "/opt/labbatch/runner/usr/lib/x86_64-linux-gnu /opt/labbatch/runner/usr/bin/python3.11 -I "
                       "-c 'import labbatch_runner, labbatch_contract; print(\"ok\")'")
    assert launch.stdout.strip() == "ok", launch.stderr
    assert not booted.sh("ls /var/lib/labbatch/boot").stdout.strip()


def test_a_demo_job_runs_from_its_deployed_definition_and_counts_the_reads(instance, tmp_path):
    booted, api = instance
    _, reads = simulated_sample(tmp_path, seed=61, mapped=70, junk=10)
    uri = api.put("inputs", "rehearsal/reads.fastq.gz", gzip.compress(reads))
    prefix, (task,) = api.submit({"pipeline": "fastq-stats", "inputs": [uri]})
    result = api.spool.result(task, JOB_BOUND)
    assert (result["started"], result.get("exit_code")) == (True, 0), (result, result["log"][-3000:])
    sequences = reads_of(reads)
    stats = json.loads(api.read(f"{prefix}stats.json"))
    assert (stats["reads"], stats["bases"]) == (len(sequences), sum(map(len, sequences)))
    manifest = json.loads(api.read(f"{prefix}manifest.json"))
    assert manifest["tool"]["argv"][1].startswith("/scratch/"), manifest["tool"]  # staged on the xfs scratch
    argv = result["create"]
    assert argv[argv.index("--network") + 1] == "host" and "--privileged" not in argv
    assert "/scratch:/scratch" in argv and "/opt/labbatch/runner:/opt/labbatch/runner:ro" in argv
    assert any(a.startswith("AWS_BATCH_JOB_ID=rehearsal-") for a in argv)
    assert not any(a.startswith("AWS_BATCH_JOB_ARRAY_INDEX=") for a in argv)


def test_bwa_runs_unmodified_in_the_bare_debian_image_plain_and_as_an_array(instance, tmp_path):
    booted, api = instance
    samples, expected = [], {}
    for seed, (mapped, junk) in zip((71, 81, 91), ((50, 10), (30, 0), (20, 20))):
        reference, reads = simulated_sample(tmp_path, seed, mapped, junk)
        name = f"s{seed}"
        samples.append({"name": name, "inputs": [api.put("inputs", f"rehearsal/{name}.fq", reads)],
                        "parameters": {"reference": api.put("references", f"rehearsal/{name}.fa", reference)}})
        expected[name] = mapped
    plain_prefix, (plain,) = api.submit({"pipeline": "bwa-flagstat", "inputs": samples[0]["inputs"],
                                         "parameters": samples[0]["parameters"]})
    array_prefix, children = api.submit({"pipeline": "bwa-flagstat", "samples": samples[1:]})
    assert len(children) == 2
    result = api.spool.result(plain, JOB_BOUND)
    assert (result["started"], result.get("exit_code")) == (True, 0), (result, result["log"][-3000:])
    assert primary_mapped(api.read(f"{plain_prefix}flagstat.txt").decode()) == expected["s71"]
    for index, (task, sample) in enumerate(zip(children, samples[1:])):
        result = api.spool.result(task, JOB_BOUND)
        assert (result["started"], result.get("exit_code")) == (True, 0), (result, result["log"][-3000:])
        assert f"AWS_BATCH_JOB_ARRAY_INDEX={index}" in result["create"]
        flagstat = api.read(f"{array_prefix}{sample['name']}/flagstat.txt").decode()
        assert primary_mapped(flagstat) == expected[sample["name"]], sample["name"]
    assert booted.sh("docker images --format '{{.Repository}}:{{.Tag}}'").stdout.count("labbatch/bwa:real") == 1


def test_an_attempt_over_its_memory_is_killed_and_the_runner_records_the_kill(instance):
    _, api = instance
    uri = api.put("inputs", "rehearsal/hog.txt", b"x")
    prefix, (task,) = api.submit({"pipeline": "hog", "inputs": [uri]})
    result = api.spool.result(task, JOB_BOUND)
    assert (result["started"], result.get("exit_code")) == (True, 137), result
    assert "--memory" in result["create"] and result["create"][result["create"].index("--memory") + 1] == "256m"
    manifest = json.loads(api.read(f"{prefix}manifest.json"))
    assert manifest["tool"]["signal"] == "SIGKILL" and manifest["tool"]["oom_killed"] is True, manifest["tool"]


def test_a_tes_task_runs_from_the_definition_the_api_registers_on_demand(instance):
    """The API registers a TES image's definition at the first task (labbatch_contract.tes); the
    agent starts it like any other, and the runner runs the task's executor in the bare image."""
    _, api = instance
    lines = [f"line {n}" for n in range(37)]
    source = api.put("inputs", "rehearsal/tes-in.txt", ("\n".join(lines) + "\n").encode())
    results = api.settings.buckets.results
    definition = tes_rules.job_definition_request(
        lab="example", image="localhost:5000/labbatch/bwa:real", job_role_arn="", execution_role_arn="",
        log_group="/labbatch/example/jobs", architecture="x86_64", timeout_minutes=10, attempts=1)
    task = {"inputs": [{"path": "/data/in.txt", "url": source, "type": "FILE"}],
            "outputs": [{"path": "/data/out/count.txt", "url": f"s3://{results}/rehearsal/tes/count.txt",
                         "type": "FILE"}],
            "executors": [{"image": "localhost:5000/labbatch/bwa:real",
                           "command": ["sh", "-c", "wc -l < /data/in.txt > /data/out/count.txt"]}]}
    job_id = new_job_id()
    request = batch_submit.submit_job_request(
        job_name="tes-task", job_queue=api.settings.queues["spot"], job_definition=definition["jobDefinitionName"],
        environment={runner_env.JOB_ID: job_id, runner_env.INPUTS: "[]",
                     runner_env.OUTPUT_PREFIX: output_prefix(results, job_id),
                     runner_env.TES_TASK: tes_rules.encode_runner_task(task)},
        vcpus=1, memory_mib=512, lab="example")
    task_id = api.spool.hand({
        "definition": definition, "overrides": request["containerOverrides"], "parameters": {},
        "context": {"job_id": f"rehearsal-{job_id.lower()}", "attempt": 1,
                    "compute_environment": "labbatch-example-spot", "job_queue": request["jobQueue"]},
        "agent_environment": agent_environment(api.endpoint)})
    result = api.spool.result(task_id, JOB_BOUND)
    assert (result["started"], result.get("exit_code")) == (True, 0), (result, result["log"][-3000:])
    assert api.read(f"s3://{results}/rehearsal/tes/count.txt").decode().strip() == str(len(lines))


def test_the_agent_refuses_a_definition_local_mode_refuses(instance):
    _, api = instance
    definition = copy.deepcopy(next(iter(api.definitions.values())))
    definition["containerProperties"]["privileged"] = True
    task = api.spool.hand({"definition": definition, "overrides": {}, "parameters": {},
                           "context": {"job_id": "x", "attempt": 1, "compute_environment": "ce", "job_queue": "q"}})
    result = api.spool.result(task, 30)
    assert result == {"started": False, "log": "",
                      "reason": "ClientException: containerProperties.privileged: LabBatch never runs privileged "
                                "containers"}


def test_a_spot_interruption_stops_the_running_job_as_ecs_draining_does(instance):
    """Last in the module: after the notice the instance starts nothing more, as a draining one."""
    booted, api = instance
    uri = api.put("inputs", "rehearsal/sleep.txt", b"x")
    prefix, (task,) = api.submit({"pipeline": "sleeper", "inputs": [uri]})
    # The instance sees its containers' processes: the tool is running once `sleep 600` is.
    running = booted.wait_for(lambda: booted.sh("pgrep -xf 'sleep 600'").returncode == 0,
                              booted_since(booted) + 120)
    assert running is not None, booted.diagnostics()
    api.spool.drain()
    result = api.spool.result(task, 90)
    assert result["started"] and result["status_reason"].startswith("Host EC2 (instance "), result
    # SIGTERM reached the runner, which stopped its tool and said so before the host went.
    assert result["exit_code"] == 143, result
    manifest = json.loads(api.read(f"{prefix}manifest.json"))
    assert manifest["tool"]["signal"] in ("SIGTERM", None), manifest["tool"]


def booted_since(instance: Instance) -> float:
    return time.monotonic() - instance.started_at
