"""`labbatch engine-config nextflow`: a `nextflow.config` for Nextflow's own AWS Batch executor.

Every key is one Nextflow reads, checked in nextflow-io/nextflow at commit 2aad02f65758 (26.08.0-edge,
plugin nf-amazon 3.10.2); the file that reads each is named beside it in NEXTFLOW_KEYS and in
tests/client/test_nextflow_config.py:
- Tasks run in their own images, unmodified: the `aws` they need is the runner tree's, which every
  instance of a lab has at /opt/labbatch/runner. `aws.batch.cliPath` must be absolute and end in
  `/bin/aws` (AwsBatchConfig.parseCliPath); Nextflow mounts the directory two levels up, the
  whole tree, read-only at the same path (AwsBatchTaskHandler.configJobDefRequest).
- Spot by default, as LabBatch's own jobs: `process.queue` is the lab's spot queue and a process
  labelled `on_demand` goes to its on-demand queue. `aws.batch.maxSpotAttempts` (default 0 since
  24.10) gives each submitted job Batch's retry on `Host EC2*` (a reclaim), exiting on anything
  else so that Nextflow's errorStrategy sees real failures: set to the attempts LabBatch's own
  pipelines get by default.
- Nextflow registers its own job definitions, named `nf-<image with [^a-zA-Z0-9-_] as ->`
  (AwsBatchTaskHandler.normalizeJobDefinitionName); the name cannot be given a prefix, which is
  why the lab's Nextflow policy grants `nf-*` job definitions (lab_constructs/nextflow_access.py).
"""

from __future__ import annotations

import re
from typing import Any

from labbatch.lab.batch_layout import RUNNER_MOUNT
from labbatch.client.sdk import LabBatchError
from labbatch.lab.config import Pipeline
from labbatch_contract import names

# Where the engine's work directories live in the lab's results bucket; the job role may read,
# write, list and delete there (lab_constructs/pipelines.py), and so may the Nextflow policy.
WORK_PREFIX = names.NEXTFLOW_WORK_PREFIX
CLI_PATH = f"{RUNNER_MOUNT}/bin/aws"
ON_DEMAND_LABEL = "on_demand"
# A process labelled pool_<name> (pool_<name>_on_demand) runs on that instance pool's spot
# (on-demand) queue: Nextflow's withLabel selects the queue, as `on_demand` does for the first pool.
POOL_LABEL_PREFIX = "pool_"
# The Batch attempts a LabBatch pipeline gets unless its lab file says otherwise (labbatch/lab/config.py).
SPOT_ATTEMPTS = Pipeline.model_fields["attempts"].default
NF_GA4GH_VERSION = "1.4.2"  # nextflow-io/nf-ga4gh VERSION at 95f43e3ab9ab (2026-06-29)

# key -> the source file (nextflow-io/nextflow 2aad02f, or nf-ga4gh 95f43e3) that reads it.
NEXTFLOW_KEYS = {
    "process.executor": "plugins/nf-amazon/src/main/nextflow/cloud/aws/batch/AwsBatchExecutor.groovy (@ServiceName('awsbatch'))",
    "process.queue": "plugins/nf-amazon/src/main/nextflow/cloud/aws/batch/AwsBatchTaskHandler.groovy (getJobQueue: task.config.queue)",
    "workDir": "plugins/nf-amazon/src/main/nextflow/cloud/aws/batch/AwsBatchExecutor.groovy (validateWorkDir: an S3 path)",
    "aws.region": "plugins/nf-amazon/src/main/nextflow/cloud/aws/config/AwsConfig.groovy",
    "aws.batch.cliPath": "plugins/nf-amazon/src/main/nextflow/cloud/aws/config/AwsBatchConfig.groovy (parseCliPath)",
    "aws.batch.jobRole": "plugins/nf-amazon/src/main/nextflow/cloud/aws/config/AwsBatchConfig.groovy",
    "aws.batch.maxSpotAttempts": "plugins/nf-amazon/src/main/nextflow/cloud/aws/config/AwsBatchConfig.groovy",
    "aws.batch.logsGroup": "plugins/nf-amazon/src/main/nextflow/cloud/aws/config/AwsBatchConfig.groovy "
                           "(AwsBatchTaskHandler.configJobDefRequest: awslogs logConfiguration)",
    "process.resourceLabels": "plugins/nf-amazon/src/main/nextflow/cloud/aws/batch/AwsBatchTaskHandler.groovy "
                              "(newSubmitRequest: builder.tags(labels); propagateTags(true))",
    "tes.endpoint": "nf-ga4gh src/main/groovy/nextflow/ga4gh/tes/config/TesConfig.groovy",
    "tes.oauthToken": "nf-ga4gh src/main/groovy/nextflow/ga4gh/tes/config/TesConfig.groovy",
}


def account_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6 or not parts[4].isdigit():
        raise LabBatchError("no_account", f"cannot read an AWS account from the caller ARN {arn!r}")
    return parts[4]


def native_config(lab_view: dict[str, Any], region: str) -> dict[str, Any]:
    """The config text and its settings, from the lab's GET /lab answer and its Region."""
    lab = lab_view["lab"]
    # The first pool's queues (a one-pool lab's only ones): Nextflow's process.queue names one
    # queue, and a lab with pools lists each pool's spot and on-demand queue under the same keys.
    pools = [p["name"] for p in lab_view.get("pools") or []]
    first = pools[0] if pools else "default"
    queues = {q["queue"]: q["name"] for q in lab_view["queues"] if q.get("pool", "default") == first}
    if not queues:
        raise LabBatchError("no_queue", f"lab {lab} has no job queue in its GET /lab answer")
    # A spot-only lab (on_demand_max_vcpus: 0) has no on-demand queue to label processes onto.
    default = queues.get("spot") or queues["on-demand"]
    on_demand = queues.get("on-demand")
    pool_queues = _other_pools(lab_view, pools[1:])
    results = lab_view["buckets"]["results"]
    role = f"arn:aws:iam::{account_of(lab_view['caller'])}:role/{names.job_role(lab)}"
    work = f"s3://{results}/{WORK_PREFIX}work"
    settings = {
        "process.executor": "awsbatch",
        "process.queue": default,
        "workDir": work,
        "aws.region": region,
        "aws.batch.cliPath": CLI_PATH,
        "aws.batch.jobRole": role,
        "aws.batch.maxSpotAttempts": SPOT_ATTEMPTS,
        "aws.batch.logsGroup": names.job_log_group(lab),
        "process.resourceLabels": {names.LAB_TAG: lab},
    }
    text = "\n".join([
        f"// nextflow.config for LabBatch lab {lab}: Nextflow's own AWS Batch executor (nf-amazon).",
        "// Run the head with the lab's Nextflow role or policy (labbatch-<lab>-nextflow). Tasks run in",
        "// their own images, unmodified: `aws` comes from the LabBatch runner tree on every instance.",
        "plugins { id 'nf-amazon' }",
        f"process.executor = '{settings['process.executor']}'",
        f"process.queue = '{settings['process.queue']}'          // spot: reclaims retried by Batch",
        "// Every job tagged with its lab (propagated to its ECS task): the lab's Nextflow policy submits,",
        "// terminates and cancels only jobs with this tag, and the lab's cost and `labbatch list` see them.",
        f"process.resourceLabels = ['{names.LAB_TAG}': '{lab}']",
        *(["// No on-demand queue in this lab (compute.on_demand_max_vcpus: 0): every process runs on spot."]
          if not (on_demand and on_demand != default) else []),
        *(["process {",
           *([f"    withLabel: '{ON_DEMAND_LABEL}' {{ queue = '{on_demand}' }}   // label a process to skip spot"]
             if on_demand and on_demand != default else []),
           *[f"    withLabel: '{label}' {{ queue = '{queue}' }}" for label, queue in pool_queues.items()],
           "}"] if (on_demand and on_demand != default) or pool_queues else []),
        *(["// Other instance pools: label a process pool_<name> (GPU pools also need `accelerator N`)."]
          if pool_queues else []),
        f"workDir = '{work}'",
        f"aws.region = '{region}'",
        f"aws.batch.cliPath = '{CLI_PATH}'",
        f"aws.batch.jobRole = '{role}'",
        f"aws.batch.maxSpotAttempts = {SPOT_ATTEMPTS}   // as LabBatch's own jobs: retried only on 'Host EC2*'",
        f"aws.batch.logsGroup = '{settings['aws.batch.logsGroup']}'   // the lab's job logs",
        f"// Outputs: publishDir them under s3://{results}/{WORK_PREFIX} (the job role may write there).",
    ])
    return {"engine": "nextflow", "executor": "awsbatch", "settings": settings,
            "on_demand": {"label": ON_DEMAND_LABEL, "queue": on_demand} if on_demand else None,
            "pools": pool_queues,
            "work_prefix": f"s3://{results}/{WORK_PREFIX}", "config": text}


def _other_pools(lab_view: dict[str, Any], pools: list[str]) -> dict[str, str]:
    """withLabel name -> queue for every pool but the first: its spot queue, and its on-demand one."""
    labels: dict[str, str] = {}
    for pool in pools:
        queues = {q["queue"]: q["name"] for q in lab_view["queues"] if q.get("pool") == pool}
        label = POOL_LABEL_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", pool)
        spot, on_demand = queues.get("spot"), queues.get("on-demand")
        if spot or on_demand:
            labels[label] = spot or on_demand
        if spot and on_demand:
            labels[f"{label}_{ON_DEMAND_LABEL}"] = on_demand
    return labels


def tes_config(url: str, token: str, work: str) -> str:
    """nf-ga4gh (TES): `url` is what it appends `/v1/tasks` to, so never with a trailing slash."""
    return "\n".join([
        "// nextflow.config: Nextflow over the lab's GA4GH TES endpoint (plugin nf-ga4gh, "
        "maintained apart from Nextflow since 2024).",
        f"plugins {{ id 'nf-ga4gh@{NF_GA4GH_VERSION}' }}",
        "process.executor = 'tes'",
        f"tes.endpoint = '{url.rstrip('/')}'",
        f"tes.oauthToken = '{token}'   // sent as Authorization: Bearer",
        f"workDir = '{work}nextflow/work'"])
