"""What reports read: GET /jobs/{job_id}/report and GET /report, SigV4 and tokens as every route.

Both answer from the ledger alone: the measured figures per attempt that the status updater
wrote when each job or child ended (labbatch_contract.measures). An array job's children come
from the `by_parent` index, a page of up to MAX_CHILDREN_PER_PAGE per request (one Query), so
a 10,000-child array is a handful of requests and no manifest is read.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from api_errors import ApiError, refused
from labbatch_contract import measures
from labbatch_contract.ids import JOB_ID_PATTERN
from labbatch_contract.ledger import BY_CREATED_INDEX, RECORD_TYPE_JOB, child_key, from_item, to_item
from ledger import decode_child_token, decode_page_token, encode_child_token, encode_page_token

router = APIGatewayRouter()
DEFAULT_CHILDREN_PER_PAGE = 1000
# A page's answer stays well under Lambda's 6 MB response: a child's figures are a few hundred bytes.
MAX_CHILDREN_PER_PAGE = 5000
JOBS_PER_PAGE = 200
_JOB_ID = re.compile(JOB_ID_PATTERN)
_SINCE = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d{1,6})?)?Z?)?$")
# What a report shows of a job record; the rest (inputs, parameters, tes) it does not need.
JOB_FIELDS = ("job_id", "name", "pipeline", "queue", "status", "status_reason", "failure", "created_at",
              "started_at", "stopped_at", "vcpus", "memory_mib", "array_size", "children", "child_failures",
              "recovered_by", "recovered_from", "recovery", "log", "output_prefix", measures.FIGURES)
CHILD_FIELDS = measures.BY_PARENT_PROJECTED


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
        after = decode_child_token(token) if token else None
        children, last = ended_children(rt.clients.dynamodb, rt.settings.table, job_id, limit=limit, after=after)
        body["children"] = children
        body["next_token"] = encode_child_token(last) if last is not None else None
    return _answer(body)


def ended_children(db: Any, table: str, job_id: str, *, limit: int,
                   after: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the job's ended children from the by_parent index; the last index when more follow."""
    query: dict[str, Any] = {
        "TableName": table, "IndexName": measures.BY_PARENT_INDEX, "Limit": limit,
        "KeyConditionExpression": f"{measures.BY_PARENT_PARTITION} = :job",
        "ExpressionAttributeValues": to_item({":job": job_id}),
    }
    if after is not None:
        query["ExclusiveStartKey"] = to_item({"job_id": child_key(job_id, after),
                                              measures.BY_PARENT_PARTITION: job_id, measures.BY_PARENT_SORT: after})
    answer = db.query(**query)
    children = []
    for item in answer.get("Items", []):
        child = from_item(item)
        row = {"index": child[measures.BY_PARENT_SORT]}
        row.update({key: child[key] for key in CHILD_FIELDS if child.get(key) is not None})
        children.append(_arrays(row))
    more = answer.get("LastEvaluatedKey")
    return children, (children[-1]["index"] if more and children else None)


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
