"""Every AWS resource name, S3 key and tag LabBatch gives, in one place.

The constructs, both Lambda functions, the runner and local mode all take names from here, so
a lab's bucket is called the same in CloudFormation, in the handler and in the local emulator.
"""

from __future__ import annotations

# Bucket names are global: the account and Region make them unique per lab deployment.
# The longest Region name today is 14 characters (ap-southeast-N, ap-northeast-N).
LONGEST_REGION = 14
BUCKET_KINDS = ("inputs", "references", "results", "logs")
MAX_BUCKET_NAME = 63
PREFIX = "labbatch"
# Every resource and every job of a lab carries it: cost allocation, and the IAM condition
# that lets a lab's API stop only its own lab's jobs.
LAB_TAG = "labbatch:lab"
# The API stack's output that clients read the endpoint from.
API_ENDPOINT_OUTPUT = "ApiEndpoint"
# Where TES tasks write their outputs in the results bucket (the job role may write there too).
TES_OUTPUTS_PREFIX = "tes/"
# Nextflow's work directories (engine-config nextflow's workDir) in the results bucket: the job
# role reads, writes and deletes there, as the lab's Nextflow policy lets its head do.
NEXTFLOW_WORK_PREFIX = "nextflow/"
# Nextflow names the job definitions it registers `nf-<image>` and cannot be told otherwise
# (nf-amazon AwsBatchTaskHandler.normalizeJobDefinitionName).
NEXTFLOW_JOB_DEFINITION_PREFIX = "nf-"
# Array jobs' sample lists, in the inputs bucket; the storage stack expires this prefix.
SAMPLES_PREFIX = "work/samples/"


def bucket(lab: str, kind: str, account: str, region: str) -> str:
    if kind not in BUCKET_KINDS:
        raise ValueError(f"unknown bucket kind {kind!r} (allowed: {', '.join(BUCKET_KINDS)})")
    return f"{PREFIX}-{lab}-{kind}-{account}-{region}"


def longest_bucket_name(lab: str) -> int:
    kind = max(BUCKET_KINDS, key=len)
    return len(bucket(lab, kind, "0" * 12, "x" * LONGEST_REGION))


def stack(lab: str, part: str) -> str:
    return f"LabBatch-{lab}-{part}"


def job_queue(lab: str, queue: str) -> str:
    return f"{PREFIX}-{lab}-{queue}"


def pool_job_queue(lab: str, pool: str, queue: str) -> str:
    """A pool's spot or on-demand queue; the pool `default` keeps the names queues had before pools."""
    return job_queue(lab, queue if pool == "default" else f"{pool}-{queue}")


def job_definition(lab: str, pipeline: str) -> str:
    return f"{PREFIX}-{lab}-{pipeline}"


def tes_job_definition_prefix(lab: str) -> str:
    """Job definitions the API registers on demand for TES task images. The `_` cannot occur in a
    lab or pipeline name, so no other lab's (nor a pipeline's) job definition starts with it,
    which is what lets IAM grant the prefix."""
    return f"{PREFIX}-{lab}_tes-"


def job_role(lab: str) -> str:
    """The role jobs run as, named only in labs with a TES endpoint: the API passes it when it
    registers a task's job definition (other labs keep CloudFormation's generated name)."""
    return f"{PREFIX}-{lab}-job"


def diagnose_policy(lab: str) -> str:
    """The managed policy whoever runs `labbatch why`/`doctor` on a deployed lab attaches, so that
    they can read why its instances never joined (lab_constructs/boot_diagnosis.py)."""
    return f"{PREFIX}-{lab}-diagnose"


def job_execution_role(lab: str) -> str:
    return f"{PREFIX}-{lab}-job-execution"


def ledger_table(lab: str) -> str:
    return f"{PREFIX}-{lab}-jobs"


def job_log_group(lab: str) -> str:
    return log_group(lab, "jobs")


def output_prefix(results_bucket: str, job_id: str) -> str:
    """Unique to the job; an array child (or a one-sample job) writes under `<prefix><sample>/`."""
    return f"s3://{results_bucket}/jobs/{job_id}/"


def samples_key(job_id: str) -> str:
    return f"{SAMPLES_PREFIX}{job_id}.json"


def alert_topic(lab: str) -> str:
    return f"{PREFIX}-{lab}-alerts"


def budget(lab: str) -> str:
    return f"{PREFIX}-{lab}"


def function(lab: str, part: str) -> str:
    return f"{PREFIX}-{lab}-{part}"


def log_group(lab: str, part: str) -> str:
    """The lab's other log groups, beside the job log group: /labbatch/<lab>/<part>."""
    return f"/{PREFIX}/{lab}/{part}"


def rest_api(lab: str) -> str:
    return f"{PREFIX}-{lab}"


def kms_alias(lab: str) -> str:
    return f"alias/{PREFIX}-{lab}"


def kms_key_parameter(lab: str) -> str:
    """The SSM parameter holding the lab key's ARN: the other stacks read it at deploy, so the
    stateful stack never exports anything they could lock."""
    return f"/{PREFIX}/{lab}/kms-key-arn"


def audit_trail(lab: str) -> str:
    return f"{PREFIX}-{lab}-data-events"
