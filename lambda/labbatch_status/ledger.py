"""Applying Batch state changes to the job ledger, never backwards.

The record layout and `progress` are labbatch_contract.ledger's; an update applies only if it raises `progress`, so a late
or duplicate event changes nothing and a finished job stays finished. The one exception:
a record the API marked FAILED because SubmitJob's outcome was unknown
(`submit_error.outcome = "unknown"`) is adopted by the first event proving the job exists.

Array children: each child has a small item `<job_id>/<index>` (no record_type, so it is
not listed) holding its own status and progress; a child's move from A to B adds one to
`children.B` and takes one from `children.A` on the parent record. Children not heard from
yet count as SUBMITTED (the API starts the parent with {"SUBMITTED": size}). The parent's
final event carries Batch's own `statusSummary`, which then replaces the counts for good
(`children_final`), so the final figures are exact even if a child update was lost.

Failures: a FAILED job's record gets `failure` (failure_classes.py) and the recovery decision
(`recovered_by` or `recovery_refused`, recovery.py) in the same write as its status, so no reader
sees one without the others; the new job's record (`recovered_from`, `recovery`) is written
before it. A failed child's item gets its own class, and the parent counts them in
`child_failures` (class -> n), from which the parent's class is drawn.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from labbatch_status.batch_events import StatusUpdate
from labbatch_contract import measures
from labbatch_contract.ids import utc_timestamp
from labbatch_contract.ledger import (CHILD_FAILURE_FIELDS, CHILD_ITEM_TTL_SECONDS, FAILED_CHILD_INDEXES,
                                      LedgerWrites, child_key, expression_values, from_item,
                                      is_condition_failure, progress_of)


class StatusLedger(LedgerWrites):
    def apply(self, update: StatusUpdate, *, recovered_by: str | None = None,
              recovery_refused: dict[str, str] | None = None) -> bool:
        """True if the ledger changed; False if the event was stale, a duplicate, or foreign.
        A FAILED job's recovery decision, if any, is written with its status and class."""
        if update.child_index is not None:
            return self._apply_child(update)
        return self._apply_job(update, recovered_by=recovered_by, recovery_refused=recovery_refused)

    def _apply_job(self, update: StatusUpdate, *, recovered_by: str | None,
                   recovery_refused: dict[str, str] | None) -> bool:
        now = utc_timestamp()
        sets = [
            "#status = :status",
            "progress = :progress",
            "attempts = :attempts",
            "updated_at = :now",
            "batch_job_id = if_not_exists(batch_job_id, :batch_job_id)",
        ]
        removes = ["submit_error"]
        values: dict[str, Any] = {
            ":status": update.status,
            ":progress": update.progress,
            ":attempts": update.attempts,
            ":now": now,
            ":batch_job_id": update.batch_job_id,
            ":unknown": "unknown",
        }
        optional = {
            "status_reason": update.status_reason,
            "started_at": update.started_at,
            "stopped_at": update.stopped_at,
            "log": update.log,
            "last_event_at": update.event_time,
            "failure": update.failure if update.status == "FAILED" else None,
            "recovered_by": recovered_by if update.status == "FAILED" else None,
            "recovery_refused": recovery_refused if update.status == "FAILED" else None,
            measures.FIGURES: measures.encode_figures(update.figures) if update.figures is not None else None,
        }
        names = {"#status": "status"}
        for name, value in optional.items():
            if value is not None:
                # Placeholders for every name: some ("log") are DynamoDB reserved words.
                sets.append(f"#{name} = :{name}")
                names[f"#{name}"] = name
                values[f":{name}"] = value
        if update.status_reason is None:
            removes.append("status_reason")
        if optional["failure"] is None:
            # A record the API marked FAILED (outcome unknown) that its job's events adopt.
            removes.append("failure")
        if update.is_final and update.status_summary is not None:
            sets += ["children = :summary", "children_final = :true"]
            values[":summary"] = update.status_summary
            values[":true"] = True
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": update.ledger_job_id}},
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression="attribute_exists(job_id) "
                "AND (attribute_not_exists(batch_job_id) OR batch_job_id = :batch_job_id) "
                "AND (progress < :progress OR submit_error.outcome = :unknown)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=expression_values(values),
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def _apply_child(self, update: StatusUpdate) -> bool:
        child_failure = update.failure if update.status == "FAILED" else None
        sets = ["#status = :status", "progress = :progress", "updated_at = :now", "expires_at = :expires"]
        names = {"#status": "status"}
        values: dict[str, Any] = {
            ":status": update.status,
            ":progress": update.progress,
            ":now": utc_timestamp(),
            ":expires": int(time.time()) + CHILD_ITEM_TTL_SECONDS,
        }
        # Every child keeps where its log is and when it ran; a failed one what GET /jobs/{id} shows.
        detail: dict[str, Any] = {"log": update.log, "started_at": update.started_at, "stopped_at": update.stopped_at}
        if child_failure:
            detail.update({**(update.child_detail or {}), "failure": child_failure})
        elif update.child_detail and update.child_detail.get("sample"):
            detail["sample"] = update.child_detail["sample"]
        if update.figures is not None:
            detail[measures.FIGURES] = measures.encode_figures(update.figures)
            # Before the child's own write: a delivery that fails after that write is redelivered,
            # finds the child final and stops there, so its row must be in already.
            self._add_report_row(update, detail.get("sample"))
        for name in ("started_at", *CHILD_FAILURE_FIELDS, measures.FIGURES):
            if detail.get(name) is not None:
                # Placeholders for every name: "log" is a DynamoDB reserved word.
                sets.append(f"#{name} = :{name}")
                names[f"#{name}"] = name
                values[f":{name}"] = detail[name]
        try:
            answer = self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": child_key(update.ledger_job_id, update.child_index)}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(progress) OR progress < :progress",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=expression_values(values),
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        previous = answer.get("Attributes", {}).get("status", {}).get("S", "SUBMITTED")
        if child_failure:
            self._count_child_failure(update.ledger_job_id, child_failure, update.child_index)
        if update.status == "RUNNING":
            self._parent_running(update.ledger_job_id)
        if previous == update.status:
            return True
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": update.ledger_job_id}},
                UpdateExpression="ADD children.#new :one, children.#old :minus_one SET updated_at = :now",
                ConditionExpression="attribute_exists(children) AND attribute_not_exists(children_final)",
                ExpressionAttributeNames={"#new": update.status, "#old": previous},
                ExpressionAttributeValues=expression_values({":one": 1, ":minus_one": -1, ":now": utc_timestamp()}),
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
        return True

    def _add_report_row(self, update: StatusUpdate, sample: str | None) -> None:
        assert update.child_index is not None and update.figures is not None
        row = measures.child_row(update.child_index, sample, update.status, update.figures)
        self._db.update_item(
            TableName=self._table,
            Key={"job_id": {"S": measures.report_block_key(update.ledger_job_id,
                                                           measures.report_block_of(update.child_index))}},
            UpdateExpression="ADD #rows :row SET expires_at = :expires",
            ExpressionAttributeNames={"#rows": measures.REPORT_ROWS},
            ExpressionAttributeValues={":row": {"SS": [row]},
                                       ":expires": {"N": str(int(time.time()) + CHILD_ITEM_TTL_SECONDS)}},
        )

    def _parent_running(self, job_id: str) -> None:
        """Batch keeps an array parent PENDING while its children run; the ledger says RUNNING
        from the first running child on (its progress then ignores the parent's own PENDING)."""
        now = utc_timestamp()
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET #status = :running, progress = :progress, updated_at = :now, "
                "started_at = if_not_exists(started_at, :now) REMOVE status_reason",
                ConditionExpression="attribute_exists(job_id) AND progress < :progress",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(
                    {":running": "RUNNING", ":progress": progress_of("RUNNING", 0), ":now": now}),
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise

    def _count_child_failure(self, job_id: str, failure: str, index: int) -> None:
        # Two writes: ADD into a map needs the map, and one expression may not both create
        # it and add into it. Only failed children pay for them.
        key = {"job_id": {"S": job_id}}
        try:
            self._db.update_item(
                TableName=self._table, Key=key,
                UpdateExpression="SET child_failures = if_not_exists(child_failures, :empty)",
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeValues=expression_values({":empty": {}}),
            )
            self._db.update_item(
                TableName=self._table, Key=key,
                UpdateExpression=f"ADD child_failures.#failure :one, {FAILED_CHILD_INDEXES} :index",
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeNames={"#failure": failure},
                ExpressionAttributeValues=expression_values({":one": 1, ":index": {index}}),
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise

    # --- reading a record, and recovery's writes -----------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        answer = self._db.get_item(TableName=self._table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        item = answer.get("Item")
        if item is None:
            return None
        return from_item(item)

    def discard_pending(self, job_id: str) -> None:
        """Remove a recovery's record that no failed job names (its event was stale)."""
        try:
            self._db.delete_item(
                TableName=self._table, Key={"job_id": {"S": job_id}},
                ConditionExpression="#status = :pending AND attribute_not_exists(batch_job_id)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values({":pending": "PENDING_SUBMIT"}),
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
