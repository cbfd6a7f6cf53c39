"""The job ledger as the API reads and writes it; the layout and the writes it shares with
the status updater are in labbatch_contract.ledger.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from api_errors import refused
from labbatch_contract.ids import JOB_ID_PATTERN
from labbatch_contract.ledger import BY_CREATED_INDEX, RECORD_TYPE_JOB, LedgerWrites, from_item, to_item

# A filtered listing reads at most this many index pages before handing back a token,
# so one GET stays quick however selective the filter is.
MAX_QUERIES_PER_PAGE = 5
FILTERED_QUERY_LIMIT = 200

_JOB_ID = re.compile(JOB_ID_PATTERN)
_CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class JobLedger(LedgerWrites):
    """Creating a record, marking its submission, recording a cancel, reading and listing."""

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
