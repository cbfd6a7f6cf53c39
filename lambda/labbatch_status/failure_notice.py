"""The message people get when a job fails for good: what failed, whose it was, why, where its log is.

Sent once, on the first delivery of a job's final FAILED event, and not at all when LabBatch
resubmitted the job itself (the recovery's own end is what matters then). Array children are
counted on their parent and never notified one by one: a 10,000-sample job must not send
10,000 emails.
"""

from __future__ import annotations

from typing import Any

from labbatch_contract.failures import APPLICATION
from labbatch_contract.ledger import FAILED_CHILD_INDEXES

TOPIC_ENV_VAR = "LABBATCH_ALERT_TOPIC_ARN"
SUBJECT_LIMIT = 100  # SNS refuses longer subjects
INDEXES_SHOWN = 20  # of an array's failed children, in the message


def should_notify(*, status: str, child_index: int | None, applied: bool,
                  recovery: dict[str, Any] | None) -> bool:
    if status != "FAILED" or child_index is not None or not applied:
        return False
    return not (recovery and recovery.get("submitted"))


def notice(lab: str, record: dict[str, Any], *, failure: str | None, status_reason: str | None,
           log: dict[str, str] | None, recovery: dict[str, Any] | None) -> tuple[str, str]:
    """(subject, body) of the alert."""
    job_id = record.get("job_id", "?")
    subject = f"LabBatch {lab}: job {job_id} failed ({failure or 'unclassified'})"[:SUBJECT_LIMIT]
    log = log or record.get("log") or {}
    lines = [
        f"Job:           {job_id}" + (f" ({record['name']})" if record.get("name") else ""),
        f"Pipeline:      {record.get('pipeline', '?')}",
        f"Submitted by:  {record.get('submitted_by', '?')}",
        f"Failure class: {failure or 'unclassified'}",
        f"Status reason: {status_reason or record.get('status_reason') or '(none given)'}",
        f"Log:           {log.get('group', '?')} / {log.get('stream', '(no attempt started)')}",
        f"Outputs:       {record.get('output_prefix', '?')}",
    ]
    if record.get("array_size"):
        counts = record.get("children") or {}
        lines.append(f"Samples:       {counts.get('FAILED', 0)} of {record['array_size']} failed")
        by_class = {str(k): int(v) for k, v in (record.get("child_failures") or {}).items() if int(v) > 0}
        if by_class:
            lines.append("  by class:    " + ", ".join(f"{name} {n}" for name, n in sorted(by_class.items())))
        indexes = sorted(int(i) for i in record.get(FAILED_CHILD_INDEXES) or ())
        if indexes:
            shown = ", ".join(map(str, indexes[:INDEXES_SHOWN]))
            more = f" and {len(indexes) - INDEXES_SHOWN} more" if len(indexes) > INDEXES_SHOWN else ""
            lines.append(f"  indexes:     {shown}{more} (`labbatch status` names their samples, JOB:SAMPLE)")
    if recovery and recovery.get("refused"):
        lines.append(f"Not resubmitted: {recovery['refused'].get('reason')}")
    elif failure == APPLICATION:
        lines.append("Not resubmitted: the tool itself exited non-zero; LabBatch never retries that.")
    lines.append(f"See it with:   labbatch status {job_id} --lab {lab}")
    return subject, "\n".join(lines) + "\n"
