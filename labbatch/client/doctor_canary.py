"""`labbatch doctor`'s canary jobs: one tiny FASTQ through the canary pipeline on each queue of every
pool (a GPU on GPU pools), its results, manifest and log read back; each outcome one check."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any, Callable

from labbatch.client.doctor_gpus import canary_gpus, gpu_canary_failed, gpu_seen
from labbatch.client.sdk import DOCTOR_CANARY_PREFIX, LabBatchClient, LabBatchError
from labbatch.client.doctor_target import Check, Target, aws_reason, where
from labbatch_contract import batch_reasons, outcome
from labbatch_contract import manifest as manifests

CANARY_PIPELINE = "fastq-stats"
CANARY_PREFIX = "labbatch-doctor/"
CANARY_READS = (("ACGTACGTGGCCAATT", "IIIIIIIIIIIIIIII"), ("GGGGCCCCAAAATTTT", "FFFFFFFFFFFFFFFF"))
# A compute environment scaling from zero takes minutes in AWS; locally, seconds.
DEFAULT_TIMEOUT_SECONDS = {"local": 120.0, "aws": 900.0}


# --- 4. canaries ------------------------------------------------------------------------------------


def canary_checks(target: Target, view: dict[str, Any], args: argparse.Namespace,
                   add: Callable[[Check], Check]) -> dict[str, bool]:
    pipeline = args.canary_pipeline
    if pipeline not in {p["name"] for p in view.get("pipelines", [])}:
        add(Check("canary", False, f"lab {view.get('lab')} has no {pipeline} pipeline to run a canary with",
                  "pass --canary-pipeline with a pipeline that reads one FASTQ, or --no-canary"))
        return {}
    queues = [q for q in view.get("queues", []) if q.get("state") == "ENABLED" and q.get("status") != "MISSING"]
    for skipped in [q for q in view.get("queues", []) if q not in queues]:
        add(Check(f"canary on {where(skipped)}", False, f"not run: queue {skipped['name']} does not take jobs",
                  "enable the queue (see above), then run doctor again"))
    if not queues:
        return {pipeline: False}

    buckets = view["buckets"]
    key = f"{CANARY_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.fastq"
    body = "".join(f"@doctor{i}\n{seq}\n+\n{qual}\n" for i, (seq, qual) in enumerate(CANARY_READS)).encode()
    try:
        s3 = target.aws_client("s3")
        s3.put_object(Bucket=buckets["inputs"], Key=key, Body=body)
    except Exception as error:  # noqa: BLE001 - botocore's errors and missing credentials alike
        add(Check("canary input", False, f"could not upload s3://{buckets['inputs']}/{key}: {aws_reason(error)}",
                  "doctor uploads a tiny FASTQ with your AWS credentials: use a --profile allowed "
                  f"s3:PutObject on s3://{buckets['inputs']}/{CANARY_PREFIX}*"))
        return {pipeline: False}
    uri = f"s3://{buckets['inputs']}/{key}"
    submitted: dict[str, dict[str, Any]] = {}
    gpu_pools: dict[str, str] = {}  # where -> the GPU pool whose canary asked for a GPU
    passed = True
    timeout = args.timeout or DEFAULT_TIMEOUT_SECONDS[target.mode]
    with target.connection.client(timeout=30) as client:
        for queue in queues:
            # One canary per queue of every pool: each pool has its own instances, image and launch template.
            pool = queue.get("pool") if len(view.get("pools") or []) > 1 else None
            gpus = canary_gpus(view, queue.get("pool"))
            if gpus:
                gpu_pools[where(queue)] = queue.get("pool") or "default"
            try:
                submitted[where(queue)] = client.submit(
                    pipeline, [uri], queue=queue["queue"], pool=pool, gpus=gpus,
                    name=f"{DOCTOR_CANARY_PREFIX}{where(queue).replace(' ', '-')}")
            except LabBatchError as error:
                passed = False
                add(Check(f"canary on {where(queue)}", False, f"not submitted: {error.code}: {error.message}",
                          "fix the queue and its compute environments above; the API's logs say more"))
        records = _wait(client, [job["job_id"] for job in submitted.values()], timeout)
        for queue_key, job in submitted.items():
            log_group = next((p.get("log_group") for p in view["pipelines"] if p["name"] == pipeline), None)
            passed &= _judge_canary(target, queue_key, records[job["job_id"]], add, s3, log_group,
                                    gpu_pool=gpu_pools.get(queue_key))
    try:
        s3.delete_object(Bucket=buckets["inputs"], Key=key)
    except Exception:  # noqa: BLE001 - leaving one tiny object behind is harmless
        pass
    return {pipeline: passed}


def _wait(client: LabBatchClient, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records: dict[str, dict[str, Any]] = {}
    while True:
        for job_id in job_ids:
            if records.get(job_id, {}).get("status") not in ("SUCCEEDED", "FAILED"):
                records[job_id] = client.get(job_id)
        if all(r.get("status") in ("SUCCEEDED", "FAILED") for r in records.values()) or time.monotonic() > deadline:
            return records
        time.sleep(0.5 if time.monotonic() + 0.5 < deadline else max(deadline - time.monotonic(), 0))


def _judge_canary(target: Target, queue: str, record: dict[str, Any], add: Callable[[Check], Check], s3,
                  definition_log_group: str | None, gpu_pool: str | None = None) -> bool:
    label = f"canary on {queue}"
    job_id, status = record["job_id"], record.get("status")
    if status != "SUCCEEDED":
        waiting = record.get("waiting_because")
        if waiting:
            add(Check(label, False, f"{job_id} {status}: {waiting['message']}", waiting["fix"]))
        elif status == "FAILED":
            attempts = record.get("attempts") or []
            last = attempts[-1] if attempts else {}
            why = "; ".join(str(v) for v in (record.get("failure"), record.get("status_reason"),
                                              last.get("reason"), last.get("stderr_tail")) if v)
            if gpu_pool:
                detail, fix = gpu_canary_failed(gpu_pool, why or "no reason given")
                add(Check(label, False, f"{job_id} FAILED: {detail}", fix.replace("JOB_ID", job_id)))
            else:
                add(Check(label, False, f"{job_id} FAILED: {why or 'no reason given'}",
                          f"`labbatch status {job_id}` and its log; {batch_reasons.CANNOT_PULL_CONTAINER} means the "
                          "image, AccessDenied the job role's S3 access"))
        else:
            add(Check(label, False, f"{job_id} still {status} after the timeout",
                      f"`labbatch why {job_id}`; in AWS, a first job waits minutes for an instance: retry with a "
                      "longer --timeout"))
        return False
    problems = []
    prefix = record["output_prefix"]
    results_bucket, results_key = prefix.removeprefix("s3://").split("/", 1)
    try:
        manifest = json.loads(s3.get_object(Bucket=results_bucket, Key=outcome.manifest_key(results_key))["Body"].read())
        if not manifests.succeeded(manifest):
            problems.append(f"its manifest says {manifests.status(manifest)}")
    except Exception as error:  # noqa: BLE001
        problems.append(f"no {outcome.MANIFEST_NAME} under {prefix} ({aws_reason(error)})")
    log = dict(record.get("log") or {})
    # The record names the stream; the group is the job definition's (or, locally, the lab's).
    log["group"] = log.get("group") or definition_log_group or (target.local or {}).get("log_group")
    seen = None
    try:
        logs = target.aws_client("logs")
        events = logs.get_log_events(logGroupName=log["group"], logStreamName=log["stream"], limit=50,
                                     startFromHead=True).get("events", []) if log.get("group") and log.get("stream") else []
        if not events:
            problems.append("no log lines" + (f" in {log.get('group')} {log.get('stream')}" if log else " (no log stream)"))
        elif gpu_pool and not (seen := gpu_seen([e.get("message", "") for e in events])):
            problems.append(f"its log has no GPU check line (pool {gpu_pool}: is the runner older than the check?)")
    except Exception as error:  # noqa: BLE001
        problems.append(f"cannot read its log ({aws_reason(error)})")
    if problems:
        add(Check(label, False, f"{job_id} SUCCEEDED but {'; '.join(problems)}",
                  "check the job role's s3:PutObject on the results bucket and the log group's existence; "
                  "your profile needs s3:GetObject there and logs:GetLogEvents to verify"))
        return False
    seconds = _duration(record)
    add(Check(label, True, f"{job_id} read the inputs bucket, wrote {outcome.manifest_key(prefix)}, logged to "
                           f"{log.get('group')}" + (f" ({seconds})" if seconds else "")
                           + (f"; GPU: {seen}" if gpu_pool else "")))
    return True


def _duration(record: dict[str, Any]) -> str:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
        stop = datetime.fromisoformat(record["stopped_at"].replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""
    return f"{(stop - start).total_seconds():.1f} s"
