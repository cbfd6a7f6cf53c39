"""A TES task as clients see it, from its ledger records: the recovery chain (the task and the
jobs LabBatch resubmitted it as), one TaskLog per attempt from that attempt's manifest, the views
MINIMAL, BASIC and FULL, and the list filters."""

from __future__ import annotations

import json
from typing import Optional

from botocore.exceptions import BotoCoreError, ClientError

from labbatch_api import tes_models as m
from labbatch_contract import manifest as manifests
from labbatch_contract import outcome
from labbatch_contract import tes as tes_rules
from labbatch_contract.ledger import FINAL_STATUSES

MAX_RECOVERY_HOPS = 5


def recovery_chain(record: dict, ledger) -> list[dict]:
    """The task's record and the records LabBatch resubmitted it as (after a spot reclaim, an OOM
    kill or an infrastructure failure), in order: the last one says where the task is now."""
    chain = [record]
    for _ in range(MAX_RECOVERY_HOPS):
        following = chain[-1].get("recovered_by")
        nxt = ledger.get(following) if following else None
        if nxt is None:
            break
        chain.append(nxt)
    return chain


def latest(record: dict, ledger) -> dict:
    return recovery_chain(record, ledger)[-1]


def _stored_json(s3, uri: str) -> Optional[dict]:
    """A JSON object LabBatch wrote to S3, or None when it is gone (expired) or unreadable."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        stored = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (ClientError, BotoCoreError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def manifest(record: dict, s3) -> Optional[dict]:
    if record.get("status") not in FINAL_STATUSES:
        return None
    return _stored_json(s3, outcome.manifest_key(record["output_prefix"]))


def input_contents(record: dict, s3) -> dict[str, str]:
    """The `content` of the task's inputs, by path, from its task document in S3 (the ledger keeps
    none); empty once work/ has expired it or when it cannot be read."""
    uri = record.get("tes_task_document")
    stored = _stored_json(s3, uri) if uri else None
    return {i["path"]: i["content"] for i in (stored or {}).get("inputs", []) if isinstance(i.get("content"), str)}


def _task_log(attempt: dict, following: Optional[dict], state: str, first: dict, full: bool,
              manifest: Optional[dict]) -> m.TaskLog:
    """One attempt of the task (one record of its recovery chain) as a TES TaskLog."""
    tes_part = manifests.tes_part(manifest)
    executor_logs = [m.ExecutorLog(**{k: v for k, v in e.items()
                                      if k in ("start_time", "end_time", "exit_code")
                                      or (full and k in ("stdout", "stderr"))})
                     for e in tes_part.get("executors", [])]
    outputs = [m.OutputFileLog(url=o["url"], path=o["path"], size_bytes=str(o["size_bytes"]))
               for o in tes_part.get("outputs", [])]
    system_logs = None
    if full and (following is not None or state in ("SYSTEM_ERROR", "CANCELED", "EXECUTOR_ERROR")):
        system_logs = [f"LabBatch failure class: {attempt.get('failure') or 'unknown'}",
                       f"reason: {attempt.get('status_reason') or ''}"]
        # Batch's job reason for a task that never started is only "Task failed to start"; the
        # container's (CannotPullContainerError: ...) is in the attempts, and engines show only this.
        for number, tried in enumerate(attempt.get("attempts") or [], 1):
            if tried.get("reason") and tried["reason"] != attempt.get("status_reason"):
                system_logs.append(f"Batch attempt {number}: {tried['reason']}")
        if manifests.error_code(manifest) or manifests.error_message(manifest):
            system_logs.append(f"runner: {manifests.error_code(manifest)}: {manifests.error_message(manifest)}")
        if following is not None:
            kind = (following.get("recovery") or {}).get("kind") or "recovery"
            system_logs.append(f"LabBatch resubmitted the task ({kind}) as {following['job_id']}")
    metadata = {"labbatch_job_id": attempt["job_id"]}
    if attempt.get("batch_job_id"):
        metadata["batch_job_id"] = attempt["batch_job_id"]
    if attempt is not first:
        metadata["recovered_from"] = first["job_id"]
    return m.TaskLog(logs=executor_logs, outputs=outputs, system_logs=system_logs, metadata=metadata,
                     start_time=attempt.get("started_at"), end_time=attempt.get("stopped_at"))


def task_view(chain: list[dict], view: str, attempt_manifests: Optional[list[Optional[dict]]] = None,
              contents: Optional[dict[str, str]] = None) -> m.TaskOut:
    """A task (its recovery chain of ledger records) in the view asked for. MINIMAL: id and state
    only; `logs` holds one TaskLog per attempt that started or ended, oldest first, each from its
    own manifest (`attempt_manifests`, by position); FULL puts back the inputs' `content` from `contents`,
    by path."""
    record, current = chain[0], chain[-1]
    state = tes_rules.task_state(current)
    if view == "MINIMAL":
        return m.TaskOut(id=record["job_id"], state=state)
    doc = task_document(record)
    full = view == "FULL"
    # Records written before content left the ledger still hold it there: only FULL, and only with
    # `contents` (given to the task's submitter alone), shows it.
    inputs = [m.InputOut(**{k: v for k, v in i.items() if k != "content"},
                         **({"content": contents.get(i["path"], i.get("content"))}
                            if full and contents is not None and not i.get("url") else {}))
              for i in doc.get("inputs", [])]
    attempt_manifests = attempt_manifests or [None] * len(chain)
    task_logs = [_task_log(attempt, chain[i + 1] if i + 1 < len(chain) else None, state, record, full,
                           attempt_manifests[i])
                 for i, attempt in enumerate(chain)
                 if attempt.get("started_at") or attempt.get("status") in FINAL_STATUSES] or None
    return m.TaskOut(
        id=record["job_id"], state=state, name=doc.get("name"), description=doc.get("description"),
        inputs=inputs or None, outputs=[m.OutputOut(**o) for o in doc.get("outputs", [])] or None,
        resources=m.ResourcesOut(**doc["resources"]) if doc.get("resources") else None,
        executors=[m.ExecutorOut(**e) for e in doc.get("executors", [])],
        volumes=doc.get("volumes"), tags=doc.get("tags"), logs=task_logs, creation_time=record.get("created_at"))



def task_document(record: dict) -> dict:
    return json.loads(record.get("tes") or "{}")


def matches(record: dict, current: dict, *, name_prefix: Optional[str], state: Optional[str],
            tags: dict[str, str]) -> bool:
    """TES 1.1's list filters; a tag asked for with an empty value matches any value."""
    doc = task_document(record)
    if name_prefix and not (doc.get("name") or "").startswith(name_prefix):
        return False
    if state and tes_rules.task_state(current) != state:
        return False
    task_tags = doc.get("tags") or {}
    for key, value in tags.items():
        if key not in task_tags or (value != "" and task_tags[key] != value):
            return False
    return True
