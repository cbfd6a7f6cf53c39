"""LabBatch status updater: AWS Batch "Job State Change" events (EventBridge) -> job ledger.

A FAILED job is also classified (`failure`, see failure_classes.py) and, when its pipeline
allows, recovered: resubmitted once with what should make it succeed (recovery.py). Both are
decided before the ledger is written, and the class and the decision (`recovered_by` or
`recovery_refused`) land in the same write as FAILED: a client never sees a FAILED job whose
class or recovery is still to come.

Environment: LABBATCH_SETTINGS (the API's settings document; read here: `lab`, `table`, and
for recovery `buckets.results`, the pools (their queues, queue_max_vcpus and limits),
`pipelines.<name>.job_definition`, `.recovery`, `.pool` and `.gpus`), plus what boto3 and Powertools read
themselves (AWS_REGION, AWS_ENDPOINT_URL[_<SERVICE>], POWERTOOLS_*).

Failures to reach DynamoDB raise, so Lambda's asynchronous retries (and the DLQ the stack
configures) redeliver the event; replays are harmless because updates are monotonic.
Events that cannot be ours (another source, no LABBATCH_JOB_ID, malformed) are logged and
dropped: retrying them would never succeed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from labbatch_status import engine_jobs
from labbatch_status import failure_notice
from labbatch_status import recovery
from labbatch_status.batch_events import NotALabBatchJob, StatusUpdate, parse_state_change
from labbatch_status.failure_classes import classify, classify_array_parent, manifest_wanted
from labbatch_contract import manifest as manifests
from labbatch_contract import measures, outcome, placement, runner_env
from labbatch_contract import tes as tes_rules
from labbatch_contract.failures import APPLICATION, RECOVERABLE_FAILURES
from labbatch_contract.ledger import CHILD_REASON_MAX_CHARS, sample_name_at
from labbatch_contract.names import output_prefix
from labbatch_contract.settings import LabSettings, load_settings
from labbatch_status.ledger import StatusLedger

logger = Logger(service="labbatch-status")


def _config(attempts: int) -> Config:
    return Config(retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=3, read_timeout=10)


@functools.cache
def status_ledger() -> tuple[LabSettings, StatusLedger]:
    # The same document and model as the API handler's: a broken deployment fails loudly here too.
    settings = load_settings()
    client = boto3.client("dynamodb", config=_config(5))
    return settings, StatusLedger(client, settings.table)


@functools.cache
def other_clients() -> tuple[Any, Any]:
    """S3 (manifests) and Batch (recovery), only built once a job fails."""
    return boto3.client("s3", config=_config(3)), boto3.client("batch", config=_config(3))


@functools.cache
def sns_client() -> Any:
    """Built only when a job fails for good."""
    return boto3.client("sns", config=_config(3))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings, ledger = status_ledger()
    logger.append_keys(lab=settings.lab)
    if event.get("source") != "aws.batch" or event.get("detail-type") != "Batch Job State Change":
        logger.error("Not a Batch job state change; dropped", extra={"source": event.get("source")})
        return {"applied": False, "reason": "not a Batch job state change"}
    try:
        update = parse_state_change(event)
    except NotALabBatchJob as exc:
        logger.warning(str(exc))
        return {"applied": False, "reason": "not a LabBatch job"}
    except (ValidationError, ValueError) as exc:
        logger.error("Malformed Batch event; dropped", extra={"error": str(exc)[:2000]})
        return {"applied": False, "reason": "malformed event"}

    logger.append_keys(job_id=update.ledger_job_id, batch_job_id=update.batch_job_id)
    _MANIFESTS.clear()
    if update.engine_job is not None and not adopt_engine_job(settings, ledger, update):
        return {"applied": False, "reason": "an engine's job on another lab's queue"}
    record = None
    prepared = None
    if update.status == "FAILED":
        record = ledger.get(update.ledger_job_id)
        if update.child_index is not None:
            update = describe_failed_child(update, record)
        else:
            update = dataclasses.replace(update, failure=classify_failure(update, record))
            if record is not None and update.engine_job is None:
                prepared = prepare_recovery(settings, ledger, update, record)
    if update.is_final and update.array_size is None:
        update = figures_of(settings, update)
    applied = ledger.apply(
        update,
        recovered_by=prepared.new["job_id"] if isinstance(prepared, PreparedRecovery) else None,
        recovery_refused=prepared.as_record() if isinstance(prepared, recovery.Refusal) else None,
    )
    logger.info(
        "Ledger updated" if applied else "Event older than the ledger; ignored",
        extra={"status": update.status, "child_index": update.child_index, "progress": update.progress,
               "failure": update.failure},
    )
    answer: dict[str, Any] = {"applied": applied, "job_id": update.ledger_job_id, "status": update.status}
    if update.failure is not None:
        answer["failure"] = update.failure
    outcome = None
    if prepared is not None:
        outcome = finish_recovery(settings, ledger, update, prepared, applied=applied)
        if outcome is not None:
            answer["recovery"] = outcome
    if record is not None and failure_notice.should_notify(status=update.status, child_index=update.child_index,
                                                           applied=applied, recovery=outcome):
        answer["notified"] = notify(settings.lab, record, update, outcome)
    return answer


def adopt_engine_job(settings: LabSettings, ledger: StatusLedger, update: StatusUpdate) -> bool:
    """Makes the record of a job an engine submitted itself, once; False when it is not this lab's."""
    record = engine_jobs.engine_record(settings, update)
    if record is None:
        logger.warning("An engine's job on a queue that is not this lab's; dropped",
                       extra={"job_queue": update.job_queue})
        return False
    if ledger.create_pending_once(record):
        logger.info("Recorded a job submitted by an engine", extra={"engine": update.engine_job.engine})
    return True


def notify(lab: str, record: dict[str, Any], update: StatusUpdate, outcome: dict[str, Any] | None) -> bool:
    """Publish the failure to the lab's alert topic, when the stack names one."""
    topic = os.environ.get(failure_notice.TOPIC_ENV_VAR)
    if not topic:
        return False
    subject, body = failure_notice.notice(lab, record, failure=update.failure, status_reason=_reason(update),
                                          log=update.log, recovery=outcome)
    try:
        sns_client().publish(TopicArn=topic, Subject=subject, Message=body)
    except (ClientError, BotoCoreError) as exc:
        # The ledger has the failure already; a lost email must not make EventBridge redeliver.
        logger.error("Failure notice not sent", extra={"error": str(exc)[:500]})
        return False
    return True


def classify_failure(update: StatusUpdate, record: dict[str, Any] | None) -> str:
    record = record or {}
    cancel_requested = bool(record.get("cancel"))
    if update.child_index is None and (update.array_size is not None or record.get("array_size")):
        return classify_array_parent(status_reason=update.status_reason, cancel_requested=cancel_requested,
                                     child_failures=record.get("child_failures"))
    evidence = {"status_reason": update.status_reason, "attempts": update.evidence,
                "cancel_requested": cancel_requested}
    failure = classify(**evidence)
    last = update.evidence[-1] if update.evidence else None
    # Only an exit code in the runner's own range needs its manifest (array children:
    # describe_failed_child).
    if failure == APPLICATION and update.child_index is None and manifest_wanted(last):
        manifest = read_manifest(update.environment.get(runner_env.OUTPUT_PREFIX))
        if manifest is not None:
            failure = classify(**evidence, manifest=manifest)
    return failure


def figures_of(settings: LabSettings, update: StatusUpdate) -> StatusUpdate:
    """A finished job's or child's measured figures per attempt, for reports (and a child's
    sample, which reports name it by); its last attempt's manifest is read once here (a failure's
    classification has usually read it already)."""
    prefix = update.environment.get(runner_env.OUTPUT_PREFIX)
    detail = update.child_detail
    if prefix and update.child_index is not None:
        sample = child_sample(update.environment.get(runner_env.SAMPLES_URI), update.child_index)
        prefix = f"{prefix}{sample}/" if sample else None
        if sample and detail is None:
            detail = {"sample": sample}
    last = update.evidence[-1] if update.evidence else None
    manifest = read_manifest(prefix) if update.attempts else None
    if not manifests.is_of(manifest, attempts=len(update.attempts),
                           exit_code=last.exit_code if last is not None else None):
        manifest = None
    figures = measures.attempt_figures(
        attempts=update.attempts, created_at=update.created_at, vcpus=update.vcpus, memory_mib=update.memory_mib,
        market=market_of(settings, update.job_queue), failure=update.failure, manifest=manifest)
    return dataclasses.replace(update, figures=figures, child_detail=detail,
                               attempts=measures.attempts_with_tails(update.attempts, figures))


def market_of(settings: LabSettings, job_queue: str | None) -> str | None:
    """"spot" or "on-demand": which of the lab's queues (names or ARNs) the job ran from."""
    if not job_queue:
        return None
    name = job_queue.rsplit("/", 1)[-1]
    for market, queue in settings.queues.items():
        if queue.rsplit("/", 1)[-1] == name:
            return market
    return None


def describe_failed_child(update: StatusUpdate, parent: dict[str, Any] | None) -> StatusUpdate:
    """A failed array child's class and what GET /jobs/{id} shows of it: its sample (from the
    job's sample list), the runner's manifest of its last attempt (under `<prefix><sample>/`)
    for the class and the reason (the runner's message names the tool's last output line),
    else Batch's own reason; its exit code and log stream."""
    assert update.child_index is not None
    last = update.evidence[-1] if update.evidence else None
    sample = child_sample(update.environment.get(runner_env.SAMPLES_URI), update.child_index)
    prefix = update.environment.get(runner_env.OUTPUT_PREFIX)
    child_prefix = f"{prefix}{sample}/" if prefix and sample else None
    manifest = None
    if child_prefix and last is not None and last.exit_code is not None:
        manifest = read_manifest(child_prefix)
        if not manifests.is_of(manifest, attempts=len(update.evidence), exit_code=last.exit_code):
            manifest = None  # another attempt's: says nothing about this one
    cancel_requested = bool((parent or {}).get("cancel"))
    failure = classify(status_reason=update.status_reason, attempts=update.evidence,
                       cancel_requested=cancel_requested, manifest=manifest)
    reason = manifests.error_message(manifest) or _reason(update)
    if reason and len(reason) > CHILD_REASON_MAX_CHARS:
        reason = reason[: CHILD_REASON_MAX_CHARS - 3] + "..."
    detail = {
        "sample": sample,
        "reason": reason,
        "exit_code": last.exit_code if last is not None else None,
        "log": update.log,
        "manifest": outcome.manifest_key(child_prefix) if child_prefix else None,
        "stopped_at": update.stopped_at,
    }
    return dataclasses.replace(update, failure=failure,
                               child_detail={k: v for k, v in detail.items() if v is not None})


_SAMPLE_LISTS: dict[str, list[Any]] = {}
_SAMPLE_LISTS_KEPT = 2


def child_sample(samples_uri: str | None, index: int) -> str | None:
    """Sample `index`'s name from the job's sample list, kept for the next failed child of the
    same job (a warm container reads a 10,000-sample list once, not once per child)."""
    if not samples_uri or not samples_uri.startswith("s3://") or "/" not in samples_uri[5:]:
        return None
    samples = _SAMPLE_LISTS.get(samples_uri)
    if samples is None:
        bucket, key = samples_uri[5:].split("/", 1)
        s3, _ = other_clients()
        try:
            samples = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError, ValueError) as exc:
            logger.warning("No readable sample list; the child is recorded without its sample",
                           extra={"error": str(exc)[:500]})
            return None
        if not isinstance(samples, list):
            return None
        while len(_SAMPLE_LISTS) >= _SAMPLE_LISTS_KEPT:
            _SAMPLE_LISTS.pop(next(iter(_SAMPLE_LISTS)))
        _SAMPLE_LISTS[samples_uri] = samples
    return sample_name_at(samples, index)


# Manifests read while handling the current event: classifying a failure and measuring it
# read the same one.
_MANIFESTS: dict[str, dict[str, Any] | None] = {}


def read_manifest(prefix: str | None) -> dict[str, Any] | None:
    """The runner's manifest.json under the job's prefix; None when it is not there or unreadable."""
    if not prefix or not prefix.startswith("s3://") or "/" not in prefix[5:]:
        return None
    if prefix not in _MANIFESTS:
        _MANIFESTS[prefix] = _read_manifest(prefix)
    return _MANIFESTS[prefix]


def _read_manifest(prefix: str) -> dict[str, Any] | None:
    bucket, key = prefix[5:].split("/", 1)
    s3, _ = other_clients()
    try:
        body = s3.get_object(Bucket=bucket, Key=outcome.manifest_key(key))["Body"].read()
        manifest = json.loads(body)
    except (ClientError, BotoCoreError, ValueError) as exc:
        logger.warning("No readable runner manifest; classified without it", extra={"error": str(exc)[:500]})
        return None
    return manifest if isinstance(manifest, dict) else None


@dataclasses.dataclass(frozen=True)
class PreparedRecovery:
    plan: recovery.Plan
    new: dict[str, Any]  # the new job's PENDING_SUBMIT record, already in the ledger
    request: dict[str, Any]  # its SubmitJob request
    created: bool  # written by this delivery (not found from an earlier one)


def prepare_recovery(settings: LabSettings, ledger: StatusLedger, update: StatusUpdate,
                     record: dict[str, Any]) -> PreparedRecovery | recovery.Refusal | None:
    """Decide what to do about a failed job before its failure is recorded. A resubmission's
    record is written now (so the FAILED record can name it); None: nothing to do or say."""
    if record.get("status") == "FAILED" and (record.get("recovered_by") or record.get("recovery_refused")):
        return None  # decided by an earlier delivery of this event
    failure = update.failure
    if failure not in RECOVERABLE_FAILURES:
        return None
    pools = settings.pool_map()
    if record.get("pipeline") == tes_rules.TES_PIPELINE and settings.tes.allowed_images:
        # A TES task: its job definition is its own (registered for its image), its switches the lab's tes.recovery.
        recovery_switches, job_definition = settings.tes.recovery, record.get("job_definition")
        movable_to, gpus = pools, 0
    else:
        pipeline = settings.pipelines.get(record.get("pipeline", ""))
        recovery_switches, job_definition = (pipeline.recovery, pipeline.job_definition) if pipeline else (None, None)
        movable_to = placement.candidates(pools, pipeline.pool) if pipeline else {}
        # The job's own GPUs (a request may ask for more than its pipeline's: doctor's GPU canary).
        gpus = max(int(record.get("gpus") or 0), pipeline.gpus if pipeline else 0)
    if recovery_switches is None or not job_definition:
        logger.warning("A job of a pipeline this lab does not have; not recovered", extra={"failure": failure})
        return None
    # The ledger names the Batch queue the job ran on, which names its pool.
    pool = settings.pool_of_queue(record.get("job_queue") or "") or next(iter(pools))
    decision = recovery.plan(
        record, failure, enabled=recovery_switches.model_dump(), pools=pools, pool=pool, movable_to=movable_to,
        gpus=gpus, status_reason=_reason(update), attempts=len(update.evidence))
    if decision is None or isinstance(decision, recovery.Refusal):
        return decision
    new_job_id = recovery.recovery_job_id(record["job_id"], update.batch_job_id, _stopped_millis(update, record))
    new = recovery.new_record(
        record, decision, job_id=new_job_id, prefix=output_prefix(settings.buckets.results, new_job_id),
        job_queue=pools[decision.pool].queues[decision.queue], job_definition=job_definition, lab=settings.lab)
    created = ledger.create_pending_once(new)
    request = recovery.submit_job_request(record, new, update.environment, job_name=update.job_name,
                                          lab=settings.lab)
    return PreparedRecovery(decision, new, request, created)


def finish_recovery(settings: LabSettings, ledger: StatusLedger, update: StatusUpdate,
                    prepared: PreparedRecovery | recovery.Refusal, *, applied: bool) -> dict[str, Any] | None:
    """After the FAILED write: submit the resubmission it named; say what was done."""
    if isinstance(prepared, recovery.Refusal):
        if not applied:
            return None
        logger.info("Not recovered", extra={"kind": prepared.kind, "reason": prepared.reason})
        return {"refused": prepared.as_record()}
    new_job_id = prepared.new["job_id"]
    if not applied:
        # Another delivery made the FAILED write, and submits what it names. A record this
        # delivery wrote that no failed job names (a stale event) is removed again.
        current = ledger.get(update.ledger_job_id) or {}
        if prepared.created and current.get("recovered_by") != new_job_id:
            ledger.discard_pending(new_job_id)
        return None
    kind = prepared.plan.kind
    _, batch = other_clients()
    try:
        answer = batch.submit_job(**prepared.request)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "Error") if isinstance(exc, ClientError) else type(exc).__name__
        logger.error("Recovery could not be submitted", extra={"new_job_id": new_job_id, "error_code": code})
        ledger.mark_submit_failed(new_job_id, f"Not submitted: AWS Batch SubmitJob failed with {code}",
                                  {"code": code, "message": str(exc)[:1000], "outcome": "not_submitted"})
        return {"kind": kind, "job_id": new_job_id, "submitted": False}
    ledger.mark_submitted(new_job_id, answer["jobId"])
    logger.info("Recovered", extra={"kind": kind, "new_job_id": new_job_id, "new_batch_job_id": answer["jobId"],
                                    "memory_mib": prepared.plan.memory_mib, "queue": prepared.plan.queue})
    return {"kind": kind, "job_id": new_job_id, "submitted": True}


def _stopped_millis(update: StatusUpdate, record: dict[str, Any]) -> int:
    """When the job stopped (the event says so on every delivery alike), else when it was created."""
    for moment in (update.stopped_at, record.get("created_at")):
        if moment:
            try:
                return int(datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ")
                           .replace(tzinfo=timezone.utc).timestamp() * 1000)
            except ValueError:
                continue
    return 0


def _reason(update: StatusUpdate) -> str | None:
    last = update.evidence[-1] if update.evidence else None
    if last is not None and last.container_reason:
        return last.container_reason
    return (last.status_reason if last is not None else None) or update.status_reason
