"""Applying Batch state changes to the job ledger, never backwards.

Same table and record layout as lambda/api/ledger.py. Every job record has `progress`
(0 PENDING_SUBMIT; attempts*10 + rank for live states, SUBMITTED 1 .. RUNNING 5;
1,000,000 for SUCCEEDED/FAILED); an update applies only if it raises `progress`, so a late
or duplicate event changes nothing and a finished job stays finished. The one exception:
a record the API marked FAILED because SubmitJob's outcome was unknown
(`submit_error.outcome = "unknown"`) is adopted by the first event proving the job exists.

Array children: each child has a small item `<job_id>/<index>` (no record_type, so it is
not listed) holding its own status and progress; a child's move from A to B adds one to
`children.B` and takes one from `children.A` on the parent record. Children not heard from
yet count as SUBMITTED (the API starts the parent with {"SUBMITTED": size}). The parent's
final event carries Batch's own `statusSummary`, which then replaces the counts for good
(`children_final`), so the final figures are exact even if a child update was lost.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from batch_events import StatusUpdate

CHILD_ITEM_TTL_SECONDS = 90 * 24 * 3600
_serializer = TypeSerializer()


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items()}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class StatusLedger:
    def __init__(self, dynamodb_client, table_name: str):
        self._db = dynamodb_client
        self._table = table_name

    def apply(self, update: StatusUpdate) -> bool:
        """True if the ledger changed; False if the event was stale, a duplicate, or foreign."""
        if update.child_index is not None:
            return self._apply_child(update)
        return self._apply_job(update)

    def _apply_job(self, update: StatusUpdate) -> bool:
        now = _now()
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
                ExpressionAttributeValues=_values(values),
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def _apply_child(self, update: StatusUpdate) -> bool:
        try:
            answer = self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": f"{update.ledger_job_id}/{update.child_index}"}},
                UpdateExpression="SET #status = :status, progress = :progress, updated_at = :now, "
                "expires_at = :expires",
                ConditionExpression="attribute_not_exists(progress) OR progress < :progress",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_values(
                    {
                        ":status": update.status,
                        ":progress": update.progress,
                        ":now": _now(),
                        ":expires": int(time.time()) + CHILD_ITEM_TTL_SECONDS,
                    }
                ),
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        previous = answer.get("Attributes", {}).get("status", {}).get("S", "SUBMITTED")
        if previous == update.status:
            return True
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": update.ledger_job_id}},
                UpdateExpression="ADD children.#new :one, children.#old :minus_one SET updated_at = :now",
                ConditionExpression="attribute_exists(children) AND attribute_not_exists(children_final)",
                ExpressionAttributeNames={"#new": update.status, "#old": previous},
                ExpressionAttributeValues=_values({":one": 1, ":minus_one": -1, ":now": _now()}),
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        return True
