"""What reports read: GET /jobs/{job_id}/report and GET /report, SigV4 and tokens as every route.

Both answer from the ledger alone: the measured figures per attempt that the status updater
wrote when each job or child ended (labbatch_contract.measures). An array job's children come
from its report blocks (REPORT_BLOCK rows an item), up to MAX_CHILDREN_PER_PAGE per request in
one BatchGetItem, so a 10,000-child array is two requests and no manifest is read.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from labbatch_api.errors import ApiError, refused
from labbatch_contract import measures
from labbatch_contract.ids import JOB_ID_PATTERN
from labbatch_contract.ledger import BY_CREATED_INDEX, RECORD_TYPE_JOB, from_item, to_item
from labbatch_api.ledger import decode_child_token, decode_page_token, encode_child_token, encode_page_token

router = APIGatewayRouter()
DEFAULT_CHILDREN_PER_PAGE = 1000
# A page's answer stays well under Lambda's 6 MB response: a child's figures are a few hundred bytes.
MAX_CHILDREN_PER_PAGE = 5000
JOBS_PER_PAGE = 200
_JOB_ID = re.compile(JOB_ID_PATTERN)
_SINCE = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d{1,6})?)?Z?)?$")
# What a report shows of a job record; the rest (inputs, parameters, tes) it does not need.
JOB_FIELDS = ("job_id", "name", "pipeline", "queue", "job_queue", "pool", "gpus", "status", "status_reason", "failure", "created_at",
              "started_at", "stopped_at", "vcpus", "memory_mib", "array_size", "children", "child_failures",
              "recovered_by", "recovered_from", "recovery", "log", "output_prefix", measures.FIGURES)


def _runtime():
    return router.context["runtime"]


def _answer(body: Any) -> Response:
    return Response(status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body, separators=(",", ":")))


def job_summary(record: dict[str, Any]) -> dict[str, Any]:
    summary = {key: record[key] for key in JOB_FIELDS if record.get(key) is not None}
    return _arrays(summary)


def _arrays(row: dict[str, Any]) -> dict[str, Any]:
    """The ledger's figures string as the arrays it holds (in ATTEMPT_FIELDS order, which every
    answer names in `figure_fields`): no JSON inside JSON, no names repeated per attempt."""
    if isinstance(row.get(measures.FIGURES), str):
        row[measures.FIGURES] = json.loads(row[measures.FIGURES])
    return row


def _int_query(name: str, default: int, most: int) -> int:
    text = router.current_event.get_query_string_value(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise refused("invalid_request", f"{name}: a whole number from 1 to {most}, not {text!r}", field=name)
    return int(text)


@router.get("/jobs/<job_id>/report", include_in_schema=False)
def job_report(job_id: str):
    """The job's figures and, for an array job, a page of its ended children's, in index order."""
    rt = _runtime()
    record = rt.ledger.get(job_id) if _JOB_ID.match(job_id) else None
    if record is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_job", f"job_id: there is no job {job_id!r}", field="job_id")
    limit = _int_query("limit", DEFAULT_CHILDREN_PER_PAGE, MAX_CHILDREN_PER_PAGE)
    token = router.current_event.get_query_string_value("next_token")
    body: dict[str, Any] = {"figure_fields": measures.ATTEMPT_FIELDS, "job": job_summary(record)}
    if record.get("array_size"):
        # The token is the last block a page held (a child token: only this API's are accepted).
        after = decode_child_token(token) if token else -1
        blocks = range(after + 1, min(after + 1 + max(1, limit // measures.REPORT_BLOCK),
                                      measures.report_block_count(int(record["array_size"]))))
        body["children"] = ended_children(rt.clients.dynamodb, rt.settings.table, job_id, blocks)
        body["next_token"] = encode_child_token(blocks[-1]) if blocks and blocks[-1] + 1 < \
            measures.report_block_count(int(record["array_size"])) else None
    return _answer(body)


def ended_children(db: Any, table: str, job_id: str, blocks: range) -> list[dict[str, Any]]:
    """The ended children whose rows are in these report blocks, in index order."""
    keys = [{"job_id": {"S": measures.report_block_key(job_id, n)}} for n in blocks]
    rows: dict[int, dict[str, Any]] = {}
    while keys:
        batch, keys = keys[:100], keys[100:]
        request = {table: {"Keys": batch, "ConsistentRead": True,
                           "ProjectionExpression": "#rows", "ExpressionAttributeNames": {"#rows": measures.REPORT_ROWS}}}
        while request:
            answer = db.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table, []):
                for text in item.get(measures.REPORT_ROWS, {}).get("SS", []):
                    row = measures.parse_child_row(text)
                    rows[row["index"]] = row
            request = answer.get("UnprocessedKeys") or None
    return [rows[i] for i in sorted(rows)]


def _since() -> str:
    text = router.current_event.get_query_string_value("since")
    if text is None:
        raise refused("invalid_request", "since: required, an ISO-8601 UTC time such as 2026-12-01T00:00:00Z",
                      field="since")
    if not _SINCE.match(text):
        raise refused("invalid_request", f"since: {text!r} is not an ISO-8601 UTC time "
                      "(2026-12-01, or 2026-12-01T08:30:00Z)", field="since")
    moment = datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=timezone.utc)
    # The ledger's fixed-width form (ids.utc_timestamp), so that string order is time order.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@router.get("/report", include_in_schema=False)
def report_jobs():
    """Jobs created since a moment, oldest first, optionally of one pipeline, a page at a time."""
    rt = _runtime()
    since = _since()
    pipeline = router.current_event.get_query_string_value("pipeline")
    token = router.current_event.get_query_string_value("next_token")
    values: dict[str, Any] = {":job": RECORD_TYPE_JOB, ":since": since}
    query: dict[str, Any] = {
        "TableName": rt.settings.table, "IndexName": BY_CREATED_INDEX, "Limit": JOBS_PER_PAGE,
        "KeyConditionExpression": "record_type = :job AND created_at >= :since",
    }
    if pipeline:
        query["FilterExpression"] = "pipeline = :pipeline"
        values[":pipeline"] = pipeline
    query["ExpressionAttributeValues"] = to_item(values)
    if token:
        query["ExclusiveStartKey"] = decode_page_token(token)
    answer = rt.clients.dynamodb.query(**query)
    jobs = [job_summary(from_item(item)) for item in answer.get("Items", [])]
    last = answer.get("LastEvaluatedKey")
    next_token = None
    if last:
        position = from_item(last)
        next_token = encode_page_token(position["created_at"], position["job_id"])
    return _answer({"figure_fields": measures.ATTEMPT_FIELDS, "jobs": jobs, "next_token": next_token})
