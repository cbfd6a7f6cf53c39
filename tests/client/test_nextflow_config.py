"""`labbatch engine-config nextflow`: the nextflow.config for Nextflow's own awsbatch executor, key by
key, each checked against the source that reads it. Sources read (fetch, December 2026):
nextflow-io/nextflow 2aad02f65758dd5d0fb0b1c74786ad52f9d06f1a (26.08.0-edge, nf-amazon 3.10.2) and
nextflow-io/nf-ga4gh 95f43e3ab9ab6d4b91cd7209c61af54bc9806ced (VERSION 1.4.2).
"""

from __future__ import annotations

import json
import re

import pytest

from labbatch.client.cli import main
from labbatch.client.sdk import LabBatchError
from labbatch.local.apigateway import LocalApiGateway
from labbatch.client.nextflow_config import NEXTFLOW_KEYS, native_config, tes_config

from tests.client.conftest import ACCOUNT, CALLER, KEY, REGION, SECRET

LAB_VIEW = {
    "lab": "example", "caller": CALLER, "tes": None, "pipelines": [],
    "queues": [{"queue": "on-demand", "name": "labbatch-example-on-demand"},
               {"queue": "spot", "name": "labbatch-example-spot"}],
    "buckets": {"inputs": "in-b", "references": "ref-b", "results": "labbatch-example-results-1-eu-central-1",
                "logs": "log-b"},
}


def assignments(text: str) -> dict[str, str]:
    """`a.b = value` lines of a nextflow.config (top level only), comments dropped."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][\w.]*) = ('[^']*'|\d+)", line)
        if match:
            found[match.group(1)] = match.group(2).strip("'")
    return found


def test_native_config_sets_each_key_nextflow_reads_for_awsbatch():
    config = native_config(LAB_VIEW, REGION)
    keys = assignments(config["config"])
    account = CALLER.split(":")[4]
    # AwsBatchExecutor.groovy: @ServiceName('awsbatch').
    assert keys["process.executor"] == "awsbatch"
    # AwsBatchTaskHandler.getJobQueue: task.config.queue, required ("Missing AWS Batch job queue").
    assert keys["process.queue"] == "labbatch-example-spot"
    # AwsBatchExecutor.validateWorkDir: the work directory must be an S3 path; the lab's Nextflow
    # prefix, which the job role may read and write (tests/cdk/test_nextflow_access.py).
    assert keys["workDir"] == "s3://labbatch-example-results-1-eu-central-1/nextflow/work"
    # AwsConfig.groovy: `final String region`, from aws.region (getAwsRegion).
    assert keys["aws.region"] == REGION
    # AwsBatchConfig.parseCliPath: absolute, ending in /bin/aws; AwsBatchTaskHandler.configJobDefRequest
    # mounts Paths.get(cliPath).parent.parent, i.e. the runner tree, at the same path, read-only.
    assert keys["aws.batch.cliPath"] == "/opt/labbatch/runner/bin/aws"
    assert keys["aws.batch.cliPath"].startswith("/") and keys["aws.batch.cliPath"].endswith("/bin/aws")
    # AwsBatchConfig: jobRole, put in each registered job definition's containerProperties.jobRoleArn.
    assert keys["aws.batch.jobRole"] == f"arn:aws:iam::{account}:role/labbatch-example-job"
    # AwsBatchConfig.maxSpotAttempts (default 0): AwsBatchTaskHandler.newSubmitRequest adds RETRY on
    # 'Host EC2*' and EXIT on '*' with that many attempts; LabBatch pipelines' default attempts are 3.
    assert keys["aws.batch.maxSpotAttempts"] == "3"
    # AwsBatchConfig.logsGroup: configJobDefRequest gives each job definition an awslogs
    # logConfiguration in that group (default /aws/batch/job): the lab's own job log group.
    assert keys["aws.batch.logsGroup"] == "/labbatch/example/jobs"
    # TaskConfig.getResourceLabels -> AwsBatchTaskHandler.newSubmitRequest: SubmitJob tags, propagateTags(true).
    assert "process.resourceLabels = ['labbatch:lab': 'example']" in config["config"]
    assert set(keys) | {"process.resourceLabels"} == set(NEXTFLOW_KEYS) - {"tes.endpoint", "tes.oauthToken"}
    assert config["settings"]["aws.batch.maxSpotAttempts"] == 3


def test_native_config_sends_on_demand_labelled_processes_to_the_on_demand_queue():
    text = native_config(LAB_VIEW, REGION)["config"]
    # A process selector inside `process { }`: Nextflow's withLabel, whose `queue` overrides process.queue.
    assert re.search(r"process \{\n\s+withLabel: 'on_demand' \{ queue = 'labbatch-example-on-demand' \}", text)
    assert "plugins { id 'nf-amazon' }" in text


def test_a_spot_only_lab_gets_no_on_demand_label_and_a_lab_without_queues_is_refused():
    config = native_config({**LAB_VIEW, "queues": [{"queue": "spot", "name": "spot-q"}]}, REGION)
    assert config["on_demand"] is None and "withLabel" not in config["config"]
    assert "every process runs on spot" in config["config"]
    with pytest.raises(LabBatchError, match="no_queue"):
        native_config({**LAB_VIEW, "queues": []}, REGION)


def test_tes_config_names_the_plugin_version_and_an_endpoint_without_trailing_slash():
    # nf-ga4gh TesConfig.groovy: tes.endpoint, tes.oauthToken (TesExecutor: new OAuth(accessToken)).
    text = tes_config("https://api.example/v1/ga4gh/tes/", "lbt_x", "s3://r/tes/")
    keys = assignments(text)
    assert "plugins { id 'nf-ga4gh@1.4.2' }" in text
    assert keys == {"process.executor": "tes", "tes.endpoint": "https://api.example/v1/ga4gh/tes",
                    "tes.oauthToken": "lbt_x", "workDir": "s3://r/tes/nextflow/work"}


def test_engine_config_nextflow_reads_the_deployed_labs_queues_and_account(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LABBATCH_HOME", str(tmp_path / "home"))  # no local lab
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    seen = []

    def api(event, _context):
        seen.append((event["httpMethod"], event["path"]))
        assert event["path"] == "/lab"
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(LAB_VIEW)}

    with LocalApiGateway(api, region=REGION, credentials=(KEY, SECRET), caller_arn=CALLER,
                         account_id=ACCOUNT) as gateway:
        code = main(["engine-config", "nextflow", "--endpoint", gateway.url, "--region", REGION, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    config = json.loads(out)
    assert config["settings"]["process.queue"] == "labbatch-example-spot"
    assert config["on_demand"] == {"label": "on_demand", "queue": "labbatch-example-on-demand"}
    assert seen == [("GET", "/lab")]  # no token: the native executor signs with the head's AWS credentials


def test_a_lab_with_pools_gets_its_first_pools_queues():
    view = {**LAB_VIEW, "pools": [{"name": "default"}, {"name": "gpu"}], "queues": [
        {"queue": "on-demand", "name": "labbatch-example-on-demand", "pool": "default"},
        {"queue": "spot", "name": "labbatch-example-spot", "pool": "default"},
        {"queue": "on-demand", "name": "labbatch-example-gpu-on-demand", "pool": "gpu"},
        {"queue": "spot", "name": "labbatch-example-gpu-spot", "pool": "gpu"}]}
    text = native_config(view, REGION)["config"]
    assert assignments(text)["process.queue"] == "labbatch-example-spot"
    assert "withLabel: 'on_demand' { queue = 'labbatch-example-on-demand' }" in text
    # Another pool's queues only behind its own labels, never as a default.
    assert [line for line in text.splitlines() if "gpu-" in line] == [
        "    withLabel: 'pool_gpu' { queue = 'labbatch-example-gpu-spot' }",
        "    withLabel: 'pool_gpu_on_demand' { queue = 'labbatch-example-gpu-on-demand' }"]


def test_each_further_instance_pool_gets_labels_naming_its_queues():
    """A lab with pools: the first pool's queues as before, every other pool reachable by withLabel
    (the same AwsBatchTaskHandler.getJobQueue reads the queue a label's block sets)."""
    view = {**LAB_VIEW, "pools": [{"name": "default"}, {"name": "memory"}, {"name": "gpu"}],
            "queues": [{"queue": "spot", "name": "labbatch-example-spot", "pool": "default"},
                       {"queue": "on-demand", "name": "labbatch-example-on-demand", "pool": "default"},
                       {"queue": "spot", "name": "labbatch-example-memory-spot", "pool": "memory"},
                       {"queue": "on-demand", "name": "labbatch-example-memory-on-demand", "pool": "memory"},
                       {"queue": "on-demand", "name": "labbatch-example-gpu-on-demand", "pool": "gpu"}]}
    config = native_config(view, REGION)
    assert assignments(config["config"])["process.queue"] == "labbatch-example-spot"
    assert config["pools"] == {"pool_memory": "labbatch-example-memory-spot",
                               "pool_memory_on_demand": "labbatch-example-memory-on-demand",
                               "pool_gpu": "labbatch-example-gpu-on-demand"}
    blocks = dict(re.findall(r"withLabel: '([\w]+)' \{ queue = '([^']+)' \}", config["config"]))
    assert blocks == {"on_demand": "labbatch-example-on-demand", **config["pools"]}
    assert native_config(LAB_VIEW, REGION)["pools"] == {}  # a one-pool lab: nothing more
