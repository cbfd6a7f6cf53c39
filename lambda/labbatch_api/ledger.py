"""The job ledger as the API reads and writes it; the layout and the writes it shares with
the status updater are in labbatch_contract.ledger.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Callable

from labbatch_api.errors import refused
from labbatch_contract.ids import JOB_ID_PATTERN
from labbatch_contract.ledger import (BY_CREATED_INDEX, FAILED_CHILD_INDEXES, RECORD_TYPE_JOB, LedgerWrites,
                                      child_key, from_item, to_item)

# A filtered listing reads at most this many index pages before handing back a token,
# so one GET stays quick however selective the filter is.
MAX_QUERIES_PER_PAGE = 5
FILTERED_QUERY_LIMIT = 200
# A listing filtered after the query (TES tasks) reads at most this many index pages before it
# answers; only then may a page be short, and its token says where to carry on.
MAX_QUERIES_PER_FILTERED_PAGE = 25

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

    def child(self, job_id: str, index: int) -> dict[str, Any] | None:
        answer = self._db.get_item(TableName=self._table, Key={"job_id": {"S": child_key(job_id, index)}},
                                   ConsistentRead=True)
        item = answer.get("Item")
        return from_item(item) if item is not None else None

    def failed_children(self, record: dict[str, Any], *, limit: int,
                        after: int | None = None) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        """(index, child item) of a page of the job's failed children in index order, from the
        parent's `failed_child_indexes`, and the last index shown when more follow."""
        indexes = sorted(int(i) for i in record.get(FAILED_CHILD_INDEXES) or ())
        if after is not None:
            indexes = [i for i in indexes if i > after]
        page, more = indexes[:limit], len(indexes) > limit
        items: dict[int, dict[str, Any]] = {}
        keys = [{"job_id": {"S": child_key(record["job_id"], i)}} for i in page]
        while keys:
            batch, keys = keys[:100], keys[100:]
            request = {self._table: {"Keys": batch, "ConsistentRead": True}}
            while request:
                answer = self._db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    child = from_item(item)
                    items[int(child["job_id"].rsplit("/", 1)[1])] = child
                request = answer.get("UnprocessedKeys") or None
        return [(i, items.get(i, {"status": "FAILED"})) for i in page], (page[-1] if more and page else None)

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

    def find_jobs(
        self, *, pipeline: str, keep: Callable[[dict[str, Any]], bool], limit: int, next_token: str | None,
        name_prefix: str | None = None, token_field: str = "next_token",
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` records of `pipeline`, newest first, that `keep` accepts, and a token only
        when more may follow: found past a full page, or not looked at yet because this request
        read MAX_QUERIES_PER_FILTERED_PAGE index pages first (the one case of a short page).

        For filters DynamoDB cannot express (a TES task's state follows its recovery chain, its tags
        are inside its document); `name_prefix` it can, so those records are never read."""
        filters = ["pipeline = :pipeline"]
        values: dict[str, Any] = {":job": RECORD_TYPE_JOB, ":pipeline": pipeline}
        query: dict[str, Any] = {"TableName": self._table, "IndexName": BY_CREATED_INDEX,
                                 "KeyConditionExpression": "record_type = :job", "ScanIndexForward": False}
        if name_prefix:
            filters.append("begins_with(#name, :name_prefix)")
            values[":name_prefix"] = name_prefix
            query["ExpressionAttributeNames"] = {"#name": "name"}
        query["FilterExpression"] = " AND ".join(filters)
        query["ExpressionAttributeValues"] = to_item(values)
        start_key = decode_page_token(next_token, token_field) if next_token else None
        found: list[dict[str, Any]] = []
        # Small first: an unfiltered page needs limit + 1 records; a selective filter grows it.
        batch = limit + 1
        for _ in range(MAX_QUERIES_PER_FILTERED_PAGE):
            page_query = dict(query, Limit=batch)
            if start_key:
                page_query["ExclusiveStartKey"] = start_key
            answer = self._db.query(**page_query)
            for item in answer.get("Items", []):
                record = from_item(item)
                if not keep(record):
                    continue
                if len(found) == limit:
                    last = found[-1]
                    return found, encode_page_token(last["created_at"], last["job_id"])
                found.append(record)
            start_key = answer.get("LastEvaluatedKey")
            if not start_key:
                return found, None
            batch = min(batch * 2, FILTERED_QUERY_LIMIT)
        last = from_item(start_key)
        return found, encode_page_token(last["created_at"], last["job_id"])


def encode_child_token(after: int) -> str:
    raw = json.dumps({"a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_child_token(token: str) -> int:
    """The last child index a page showed; anything we did not issue is refused."""
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = position["a"]
        valid = set(position) == {"a"} and type(after) is int and after >= 0
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise refused("invalid_next_token", "next_token: not a token this API issued", field="next_token")
    return after


def encode_page_token(created_at: str, job_id: str) -> str:
    raw = json.dumps({"c": created_at, "j": job_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, field: str = "next_token") -> dict[str, Any]:
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
        raise refused(f"invalid_{field}", f"{field}: not a token this API issued", field=field)
    return to_item({"record_type": RECORD_TYPE_JOB, "created_at": created_at, "job_id": job_id})
