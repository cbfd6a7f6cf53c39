"""The job ledger: one DynamoDB item per submission, written before Batch hears of it.

Layout (shared with lambda/status/status_ledger.py, which keeps its own copy of what it needs):
- key `job_id` (S); `record_type` = "job" on job records only, so the `by_created` GSI
  (record_type, created_at) lists jobs newest first and skips idempotency and child items;
- `created_at`, `submitted_at`, `started_at`, `stopped_at`, `updated_at`: ISO-8601 UTC,
  fixed width (`2026-11-02T10:11:12.123456Z`) so they sort as strings;
- `progress` (N): how far the job has got, the guard that keeps updates monotonic:
  0 PENDING_SUBMIT, attempts*10 + rank for Batch states (SUBMITTED 1 ... RUNNING 5), and
  1,000,000 for SUCCEEDED/FAILED. An update applies only if it moves `progress` forward.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from api_errors import refused
from job_models import JOB_ID_PATTERN

RECORD_TYPE_JOB = "job"
BY_CREATED_INDEX = "by_created"
PROGRESS_PENDING_SUBMIT = 0
PROGRESS_SUBMITTED = 1
PROGRESS_FINAL = 1_000_000
# A filtered listing reads at most this many index pages before handing back a token,
# so one GET stays quick however selective the filter is.
MAX_QUERIES_PER_PAGE = 5
FILTERED_QUERY_LIMIT = 200

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
_JOB_ID = re.compile(JOB_ID_PATTERN)
_CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    # Absent beats NULL: a missing attribute is what "not known yet" means in the ledger.
    return {key: _serializer.serialize(value) for key, value in record.items() if value is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class JobLedger:
    def __init__(self, dynamodb_client, table_name: str):
        self._db = dynamodb_client
        self._table = table_name

    def create_pending(self, record: dict[str, Any]) -> None:
        self._db.put_item(
            TableName=self._table,
            Item=to_item(record),
            ConditionExpression="attribute_not_exists(job_id)",
        )

    def mark_submitted(self, job_id: str, batch_job_id: str, submitted_at: str) -> None:
        """Store the Batch job id; move to SUBMITTED unless an event already moved it further."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET batch_job_id = :b, submitted_at = :t, updated_at = :t, "
                "#status = :submitted, progress = :p REMOVE status_reason",
                ConditionExpression="progress < :p",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":b": batch_job_id, ":t": submitted_at, ":submitted": "SUBMITTED", ":p": PROGRESS_SUBMITTED}
                ),
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            # The status updater got there first (it finds records by LABBATCH_JOB_ID):
            # keep its state, add what only we know.
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET batch_job_id = :b, submitted_at = :t",
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeValues=to_item({":b": batch_job_id, ":t": submitted_at}),
            )

    def mark_submit_failed(self, job_id: str, reason: str, submit_error: dict[str, str], at: str) -> bool:
        """FAILED with the reason; False when an event shows the job reached Batch after all."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET #status = :failed, status_reason = :r, submit_error = :e, "
                "progress = :p, stopped_at = :t, updated_at = :t, failure = :failure",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":failed": "FAILED",
                        ":pending": "PENDING_SUBMIT",
                        ":r": reason,
                        ":e": submit_error,
                        ":p": PROGRESS_FINAL,
                        ":t": at,
                        # Never started: the failure class lambda/status/failure_classes.py
                        # gives a job that could not start.
                        ":failure": "infrastructure",
                    }
                ),
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def record_cancel(self, job_id: str, cancel: dict[str, str]) -> dict[str, Any]:
        answer = self._db.update_item(
            TableName=self._table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET cancel = :c, updated_at = :t",
            ConditionExpression="attribute_exists(job_id)",
            ExpressionAttributeValues=to_item({":c": cancel, ":t": cancel["requested_at"]}),
            ReturnValues="ALL_NEW",
        )
        return from_item(answer["Attributes"])

    def get(self, job_id: str) -> dict[str, Any] | None:
        answer = self._db.get_item(TableName=self._table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        item = answer.get("Item")
        if item is None:
            return None
        record = from_item(item)
        return record if record.get("record_type") == RECORD_TYPE_JOB else None

    def list_jobs(
        self, *, status: str | None, pipeline: str | None, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs newest first, optionally filtered; a page may be short, follow next_token."""
        filters, values, names = [], {":job": RECORD_TYPE_JOB}, {}
        if status is not None:
            filters.append("#status = :status")
            values[":status"] = status
            names["#status"] = "status"
        if pipeline is not None:
            filters.append("pipeline = :pipeline")
            values[":pipeline"] = pipeline
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_CREATED_INDEX,
            "KeyConditionExpression": "record_type = :job",
            "ScanIndexForward": False,
            "ExpressionAttributeValues": to_item(values),
        }
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
        if names:
            query["ExpressionAttributeNames"] = names

        start_key = decode_page_token(next_token) if next_token else None
        records: list[dict[str, Any]] = []
        for _ in range(MAX_QUERIES_PER_PAGE):
            wanted = limit - len(records)
            page_query = dict(query, Limit=FILTERED_QUERY_LIMIT if filters else wanted)
            if start_key:
                page_query["ExclusiveStartKey"] = start_key
            answer = self._db.query(**page_query)
            records.extend(from_item(item) for item in answer.get("Items", []))
            start_key = answer.get("LastEvaluatedKey")
            if len(records) >= limit or not start_key:
                break
        if len(records) > limit:
            records = records[:limit]
            last = records[-1]
            return records, encode_page_token(last["created_at"], last["job_id"])
        if start_key:
            last = from_item(start_key)
            return records, encode_page_token(last["created_at"], last["job_id"])
        return records, None


def encode_page_token(created_at: str, job_id: str) -> str:
    raw = json.dumps({"c": created_at, "j": job_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> dict[str, Any]:
    """The GSI position a token stands for; anything we did not issue is refused."""
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
        created_at, job_id = position["c"], position["j"]
        valid = (
            set(position) == {"c", "j"}
            and isinstance(created_at, str)
            and isinstance(job_id, str)
            and _CREATED_AT.match(created_at)
            and _JOB_ID.match(job_id)
        )
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise refused("invalid_next_token", "next_token: not a token this API issued", field="next_token")
    return to_item({"record_type": RECORD_TYPE_JOB, "created_at": created_at, "job_id": job_id})
