"""LabBatch job API: the Lambda behind the lab's REST API (API Gateway proxy, IAM auth).

Routes: POST /jobs, GET /jobs, GET /jobs/{job_id}, DELETE /jobs/{job_id},
GET /jobs/{job_id}/children?status=FAILED, GET /jobs/{job_id}/children/{index or sample},
GET /pipelines, GET /lab, GET /openapi.json, POST/GET /tokens and DELETE /tokens/{id}
(token_routes.py: bearer tokens for TES clients), and GA4GH TES 1.1 under /ga4gh/tes/v1
(tes_routes.py). Every error is {"error": {"code", "message", "details"}}.

Environment: LABBATCH_SETTINGS (see api_settings.py), plus what boto3 and Powertools read
themselves (AWS_REGION, AWS_ENDPOINT_URL[_<SERVICE>], POWERTOOLS_*).
"""

import base64
import functools
import json
import re
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any, Callable, Literal, Optional

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from botocore.exceptions import BotoCoreError, ClientError

from labbatch_api.admission import admit
from labbatch_api.clients import ApiClients, build_clients
from labbatch_api.errors import ApiError, error_response, iam_caller, refused, unavailable
from labbatch_contract.settings import LabSettings, SettingsError, load_settings
from labbatch_contract.settings import LocalPipelineSettings as PipelineLocalSettings
from labbatch_api.aws_faults import error_code, is_retryable
from labbatch_api.batch_requests import stop_job
from labbatch_contract.ids import JOB_ID_PATTERN, utc_timestamp
from labbatch_contract.ledger import FINAL_STATUSES, sample_name_at
from labbatch_contract import batch_reasons
from labbatch_contract import tes as tes_rules
from labbatch_api.job_models import (
    ChildListResponse,
    ChildView,
    ErrorBody,
    JobListResponse,
    JobStatus,
    JobView,
    LabDefaults,
    ParameterSpec,
    PipelineDefaults,
    PipelineLimits,
    PipelineLocal,
    PipelinesResponse,
    PipelineView,
    SubmitJobRequest,
    SubmitJobResponse,
    LabResponse,
)
from labbatch_api.lab_state import lab_view
from labbatch_api.pool_views import pipeline_limits, pool_views
from labbatch_api.ledger import JobLedger, decode_child_token, encode_child_token
from labbatch_api.submission import submit
from labbatch_api.report_routes import router as report_router
from labbatch_api.tes_routes import PREFIX as TES_PREFIX, router as tes_router
from labbatch_api.token_routes import router as token_router
from labbatch_api.waiting import explain as explain_waiting

# A retried POST with the same key within this window returns the first answer.
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
IDEMPOTENCY_KEY_PREFIX = "labbatch-idempotency"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# GET /jobs/{id} of an array job names this many failed children; the rest are a page away.
FAILED_CHILDREN_SHOWN = 10

logger = Logger(service="labbatch-api")


def _json_body(text: str) -> Any:
    """json.loads, with what it raises besides JSONDecodeError (nesting past the recursion
    limit, integers past Python's 4,300 digits) reported as invalid JSON (422), not a 500."""
    try:
        return json.loads(text)
    except (RecursionError, ValueError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError("nested too deeply or a number too long", text[:0], 0) from None


# A response that breaks its own model is our bug: 500, not Powertools' default 422.
app = APIGatewayRestResolver(
    enable_validation=True,
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
    json_body_deserializer=_json_body,
)
app.include_router(tes_router, prefix=TES_PREFIX)
app.include_router(token_router)
app.include_router(report_router)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_replayed: ContextVar[bool] = ContextVar("replayed", default=False)

ERROR_RESPONSES = {
    code: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for code, text in {
        # 403 comes from API Gateway's IAM authorization (and local mode's front), before the handler.
        403: "Not signed with SigV4, or the caller is not one of the lab's principals",
        404: "No such job",
        409: "Conflict (finished job, idempotency key in use)",
        413: "Body over the size limit",
        415: "Body not application/json",
        422: "Refused: details.field names what to change",
        503: "AWS throttled or failed after retries; see Retry-After",
    }.items()
}


@dataclass(frozen=True)
class ApiRuntime:
    settings: LabSettings
    clients: ApiClients
    ledger: JobLedger
    idempotency_config: IdempotencyConfig
    submit_once: Callable[..., dict]


@functools.cache
def runtime() -> ApiRuntime:
    """Settings and clients, built on the first request of each container and kept."""
    settings = load_settings()
    clients = build_clients()
    config = IdempotencyConfig(
        event_key_jmespath="[caller, key]",
        payload_validation_jmespath="request",
        expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS,
        response_hook=_mark_replayed,
    )
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.table,
        key_attr="job_id",
        expiry_attr="expires_at",
        boto3_client=clients.dynamodb,
    )
    submit_once = idempotent_function(
        _admit_and_submit,
        data_keyword_argument="submission",
        persistence_store=persistence,
        config=config,
        key_prefix=IDEMPOTENCY_KEY_PREFIX,
    )
    return ApiRuntime(settings, clients, JobLedger(clients.dynamodb, settings.table), config, submit_once)


def _mark_replayed(response: Any, _record: Any) -> Any:
    _replayed.set(True)
    return response


def _admit_and_submit(*, submission: dict, request: SubmitJobRequest) -> dict:
    """Everything a POST does, inside the idempotency guard when a key is given.

    Admission is inside too: a replay answers from the stored result without re-reading
    S3, and a refusal removes the in-progress marker so the key can be used again.
    """
    rt = runtime()
    job = admit(request, rt.settings, rt.clients.s3)
    return submit(
        job,
        caller=submission["caller"],
        idempotency_key=submission["key"],
        settings=rt.settings,
        clients=rt.clients,
        ledger=rt.ledger,
    )


def _caller_arn() -> str:
    return iam_caller(app.current_event.raw_event)


def _json(status: int, model: Any, headers: dict[str, str] | None = None) -> Response:
    # A dict, not a JSON string: Powertools validates it against the route's response model.
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump(mode="json"),
        headers=headers or {},
    )


@app.post(
    "/jobs",
    summary="Submit a job (or an array job, with samples)",
    description="Send an Idempotency-Key header to make retries safe: the same key and body return "
    "the same job; the same key with a different body is refused (422).",
    responses={202: {"description": "Accepted"}, **ERROR_RESPONSES},
)
def create_job(
    request: Annotated[SubmitJobRequest, Body()],
    idempotency_key: Annotated[Optional[str], Header(alias="Idempotency-Key", min_length=1, max_length=255)] = None,
) -> Response[SubmitJobResponse]:
    caller = _caller_arn()
    submission = {"caller": caller, "key": idempotency_key, "request": request.model_dump(mode="json")}
    _replayed.set(False)
    rt = runtime()
    if idempotency_key is None:
        body = _admit_and_submit(submission=submission, request=request)
    else:
        body = rt.submit_once(submission=submission, request=request)
    headers = {"Idempotent-Replayed": "true"} if _replayed.get() else {}
    return _json(HTTPStatus.ACCEPTED, SubmitJobResponse.model_validate(body), headers)


@app.get("/jobs", summary="List jobs, newest first", responses={200: {"description": "OK"}, **ERROR_RESPONSES})
def list_jobs(
    status: Annotated[Optional[JobStatus], Query()] = None,
    pipeline: Annotated[Optional[str], Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_token: Annotated[Optional[str], Query(min_length=1, max_length=512)] = None,
) -> Response[JobListResponse]:
    records, token = runtime().ledger.list_jobs(status=status, pipeline=pipeline, limit=limit, next_token=next_token)
    return _json(HTTPStatus.OK, JobListResponse(jobs=[JobView.model_validate(r) for r in records], next_token=token))


@app.get("/jobs/<job_id>", summary="One job's record", responses={200: {"description": "OK"}, **ERROR_RESPONSES})
def get_job(job_id: str) -> Response[JobView]:
    record = _existing_job(job_id)
    rt = runtime()
    try:
        waiting_because = explain_waiting(record, rt.clients.batch, rt.settings)
    except (ClientError, BotoCoreError) as error:
        # The record answers anyway; the explanation is extra.
        logger.warning("Could not explain the wait", extra={"job_id": job_id, "error_code": error_code(error)})
        waiting_because = None
    if waiting_because is not None:
        record = {**record, "waiting_because": waiting_because}
    if record.get("array_size") and record.get("child_failures"):
        page, last = rt.ledger.failed_children(record, limit=FAILED_CHILDREN_SHOWN)
        record = {**record, "failed_children": [_child_view(job_id, i, item) for i, item in page],
                  "failed_children_next_token": encode_child_token(last) if last is not None else None}
    return _json(HTTPStatus.OK, JobView.model_validate(record))


@app.get(
    "/jobs/<job_id>/children",
    summary="An array job's failed children, in index order, a page at a time",
    description="Each with its sample, failure class, reason and log. Only status=FAILED is listed.",
    responses={200: {"description": "OK"}, **ERROR_RESPONSES},
)
def list_children(
    job_id: str,
    status: Annotated[Literal["FAILED"], Query()] = "FAILED",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_token: Annotated[Optional[str], Query(min_length=1, max_length=512)] = None,
) -> Response[ChildListResponse]:
    record = _array_job(job_id)
    after = decode_child_token(next_token) if next_token else None
    page, last = runtime().ledger.failed_children(record, limit=limit, after=after)
    return _json(HTTPStatus.OK, ChildListResponse(
        job_id=job_id, children=[_child_view(job_id, i, item) for i, item in page],
        next_token=encode_child_token(last) if last is not None else None))


@app.get(
    "/jobs/<job_id>/children/<child>",
    summary="One child of an array job, by array index or sample name",
    description="A child named only by digits is its index. A sample name is looked up in the job's sample "
    "list, which is kept as long as the lab's work/ objects are.",
    responses={200: {"description": "OK"}, **ERROR_RESPONSES},
)
def get_child(job_id: str, child: str) -> Response[ChildView]:
    record = _array_job(job_id)
    size = int(record["array_size"])
    samples = None
    if child.isascii() and child.isdigit():
        index = int(child)
    else:
        samples = _sample_list(record, child)
        index = next((i for i in range(len(samples)) if sample_name_at(samples, i) == child), size)
    if index >= size:
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_child",
                       f"child: job {job_id} has no child {child!r} (indexes 0-{size - 1}, or a sample's name)",
                       field="child", details={"array_size": size})
    item = runtime().ledger.child(job_id, index)
    if item is None:
        # Not heard of yet; a job that succeeded had every child succeed.
        item = {"status": "SUCCEEDED" if record.get("status") == "SUCCEEDED" else "SUBMITTED"}
    sample = item.get("sample")
    if sample is None:
        if samples is None:
            try:
                samples = _sample_list(record, child)
            except ApiError:
                samples = None
        sample = sample_name_at(samples, index) if samples is not None else None
    return _json(HTTPStatus.OK, _child_view(job_id, index, item, sample=sample))


def _array_job(job_id: str) -> dict:
    record = _existing_job(job_id)
    if not record.get("array_size"):
        raise ApiError(HTTPStatus.NOT_FOUND, "not_an_array_job",
                       f"job_id: job {job_id} is not an array job: it has no children", field="job_id")
    return record


def _sample_list(record: dict, child: str) -> list:
    uri = str(record.get("samples_uri") or "")
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        body = runtime().clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        samples = json.loads(body)
    except ClientError as error:
        if error_code(error) not in ("NoSuchKey", "404", "NoSuchBucket"):
            raise
        samples = None
    except ValueError:
        samples = None
    if not isinstance(samples, list):
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_child",
                       f"child: the sample list of job {record['job_id']} is no longer kept; "
                       f"address the child by its index instead of {child!r}", field="child")
    return samples


def _child_view(job_id: str, index: int, item: dict, *, sample: str | None = None) -> ChildView:
    fields = ("failure", "reason", "exit_code", "log", "manifest", "started_at", "stopped_at")
    return ChildView(job_id=job_id, index=index, sample=item.get("sample") or sample,
                     status=item.get("status") or "SUBMITTED",
                     **{name: item[name] for name in fields if item.get(name) is not None})


@app.get("/lab", summary="The lab's queues, compute environments and pipeline images, as Batch reports them",
         responses={200: {"description": "OK"}, **ERROR_RESPONSES})
def get_lab() -> Response[LabResponse]:
    rt = runtime()
    view = LabResponse.model_validate({**lab_view(rt.clients.batch, rt.settings), "caller": _caller_arn()})
    return _json(HTTPStatus.OK, view)


@app.delete(
    "/jobs/<job_id>",
    summary="Cancel a job that has not started, or terminate a running one",
    responses={202: {"description": "Cancel requested"}, **ERROR_RESPONSES},
)
def cancel_job(job_id: str) -> Response[JobView]:
    caller = _caller_arn()
    rt = runtime()
    record = _existing_job(job_id)
    if record["status"] in FINAL_STATUSES:
        raise _finished(job_id, record["status"])
    batch_job_id = record.get("batch_job_id")
    if not batch_job_id:
        raise ApiError(
            HTTPStatus.CONFLICT,
            "job_not_submitted_yet",
            f"job {job_id} is still being submitted to AWS Batch; try again in a moment",
            details={"job_id": job_id},
            headers={"Retry-After": "1"},
        )
    # The ledger follows Batch through events, a little behind: ask Batch where the job is
    # now, because cancelling a job that has started does nothing.
    live = rt.clients.batch.describe_jobs(jobs=[batch_job_id]).get("jobs", [])
    if not live or live[0]["status"] in FINAL_STATUSES:
        raise _finished(job_id, live[0]["status"] if live else "finished")
    action = stop_job(rt.clients.batch, batch_job_id, live[0]["status"], batch_reasons.api_cancel(caller))
    logger.info("Stop requested", extra={"job_id": job_id, "batch_job_id": batch_job_id, "action": action})
    record = rt.ledger.record_cancel(
        job_id, {"requested_at": utc_timestamp(), "requested_by": caller, "action": action}
    )
    return _json(HTTPStatus.ACCEPTED, JobView.model_validate(record))


@app.get("/pipelines", summary="What this lab can run, with defaults and limits")
def list_pipelines() -> Response[PipelinesResponse]:
    settings = runtime().settings
    pipelines = [
        PipelineView(
            name=name,
            description=pipeline.description,
            defaults=PipelineDefaults(
                vcpus=pipeline.vcpus,
                memory_mib=pipeline.memory_mib,
                timeout_minutes=pipeline.timeout_minutes,
                disk_factor=pipeline.disk_factor,
                queue=pipeline.default_queue,
                gpus=pipeline.gpus,
            ),
            parameters={
                key: ParameterSpec(required=default is None, default=default)
                for key, default in pipeline.parameters.items()
            },
            secondary_files=pipeline.secondary_files,
            limits=PipelineLimits(**pipeline_limits(settings, pipeline)),
            pool=pipeline.pool,
            local=_pipeline_local(pipeline.local),
        )
        for name, pipeline in sorted(settings.pipelines.items())
    ]
    return _json(HTTPStatus.OK, PipelinesResponse(pipelines=pipelines, pools=pool_views(settings)))


def _pipeline_local(local: PipelineLocalSettings | None) -> PipelineLocal | None:
    """Local mode's stand-in image and scaled defaults (labbatch/local/lab.py); None when deployed."""
    if local is None:
        return None
    scaled = LabDefaults(vcpus=local.lab_vcpus, memory_mib=local.lab_memory_mib) if local.lab_vcpus is not None else None
    return PipelineLocal(image=local.image, stand_in=local.stand_in, scaled_from=scaled)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document():
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_openapi_json())


@functools.cache
def _openapi_json() -> str:
    schema = json.loads(
        app.get_openapi_json_schema(
            title="LabBatch job API",
            version="1",
            description="Submit and follow a lab's AWS Batch jobs. Requests are signed with SigV4 "
            "(service execute-api). Every error is {\"error\": {\"code\", \"message\", \"details\"}}.",
        )
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    # Powertools documents its own 422/500 bodies; this API answers every error as ErrorBody.
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses["422"] = ERROR_RESPONSES[422]
            responses["500"] = {**ERROR_RESPONSES[422], "description": "Internal error"}
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return json.dumps(schema)


def _existing_job(job_id: str) -> dict:
    record = runtime().ledger.get(job_id) if _JOB_ID.match(job_id) else None
    if record is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_job", f"job_id: there is no job {job_id!r}", field="job_id")
    return record


def _finished(job_id: str, status: str) -> ApiError:
    return ApiError(
        HTTPStatus.CONFLICT,
        "job_finished",
        f"job {job_id} has already finished ({status}); there is nothing to cancel",
        details={"job_id": job_id, "status": status},
    )


# --- errors: one shape for all of them ---------------------------------------------------

# A path that names a job, whatever characters it holds (a route's <job_id> takes fewer).
JOB_PATH = re.compile(r"^/jobs/([^/]+)(/.*)?$")
TES_TASK_PATH = re.compile(r"^" + re.escape(TES_PREFIX) + r"/tasks/([^/]+)$")


def _allowed_methods(path: str) -> list[str]:
    """What the resolver's own routes answer on `path`, so an unknown method on a known path is
    a 405 naming them (Powertools' route table: the version is pinned in requirements.txt)."""
    return sorted({route.method for route in app._static_routes + app._dynamic_routes if route.rule.match(path)})


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response:
    if error.status >= 500:
        logger.warning("Answered with an error", extra={"code": error.code, "status": int(error.status)})
    return error_response(error)


@app.not_found
def _no_route(_: NotFoundError) -> Response:
    path, method = app.current_event.path, app.current_event.http_method.upper()
    methods = _allowed_methods(path)
    if methods:
        return error_response(ApiError(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method_not_allowed",
            f"{method} is not allowed on {path}; use {', '.join(methods)}",
            field="method",
            details={"allowed": methods},
            headers={"Allow": ", ".join(methods)},
        ))
    job = JOB_PATH.match(path)
    if job:
        # The id has characters no route parameter takes (say, an emoji): no such job, not no route.
        return error_response(
            ApiError(HTTPStatus.NOT_FOUND, "no_such_job", f"job_id: there is no job {job.group(1)!r}", field="job_id")
        )
    task = TES_TASK_PATH.match(path)
    if task and method == "GET":
        return error_response(ApiError(HTTPStatus.NOT_FOUND, "no_such_task", f"id: there is no task {task.group(1)!r}",
                                       field="id"))
    return error_response(ApiError(HTTPStatus.NOT_FOUND, "no_such_route", f"There is no {path} in this API",
                                   field="path"))


def field_name(location: tuple) -> str:
    """("body", "samples", 3, "inputs", 0) -> "samples[3].inputs[0]", as the caller wrote it."""
    parts = list(location)
    if parts[:1] == ["header"] and len(parts) == 2:
        # Header names arrive lower-cased; name them as the API documents them.
        return "-".join(word.capitalize() for word in str(parts[1]).split("-"))
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for a bad dict key: the key itself precedes it
            continue
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    problems = [
        {"field": field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", "")), "type": e.get("type")}
        for e in error.errors()
    ]
    if any(p["type"] == "json_invalid" for p in problems):
        problems = [{"field": "body", "message": "the body is not valid JSON", "type": "json_invalid"}]
    first = problems[0] if problems else {"field": "body", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return error_response(
        refused("invalid_request", message, field=first["field"], problems=problems)
    )


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(_: RequestUnsupportedContentType) -> Response:
    return error_response(
        ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send the body as application/json")
    )


@app.exception_handler(IdempotencyValidationError)
def _idempotency_key_reused(_: IdempotencyValidationError) -> Response:
    # As the IETF Idempotency-Key draft advises: a reused key with another body is a 422.
    return error_response(
        refused(
            "idempotency_key_reused",
            "Idempotency-Key: this key was already used with a different request body; "
            "use a new key for a new job",
            field="Idempotency-Key",
        )
    )


@app.exception_handler(IdempotencyAlreadyInProgressError)
def _idempotency_in_progress(_: IdempotencyAlreadyInProgressError) -> Response:
    return error_response(
        ApiError(
            HTTPStatus.CONFLICT,
            "idempotency_key_in_progress",
            "Idempotency-Key: a request with this key is still being processed; retry shortly",
            field="Idempotency-Key",
            headers={"Retry-After": "2"},
        )
    )


@app.exception_handler(IdempotencyPersistenceLayerError)
def _idempotency_store_failed(error: IdempotencyPersistenceLayerError) -> Response:
    logger.exception("Idempotency store failed")
    return error_response(unavailable("ledger_unavailable", "The job ledger is not answering; try again later"))


@app.exception_handler([ClientError, BotoCoreError])
def _aws_failed(error: Exception) -> Response:
    code = error_code(error)
    if is_retryable(error):
        logger.warning("AWS unavailable after retries", extra={"error_code": code})
        return error_response(
            unavailable("aws_unavailable", f"AWS is throttling or failing ({code}); try again later", aws_error=code)
        )
    logger.exception("AWS call failed")
    return error_response(ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", f"An AWS call failed ({code})"))


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("Unhandled error")
    return error_response(ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Internal error"))


def _direct_error(error: ApiError) -> dict:
    """An API Gateway proxy answer for errors found before the resolver runs."""
    response = error_response(error)
    return {
        "statusCode": int(error.status),
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **error.headers},
        "multiValueHeaders": {},
        "body": response.body,
        "isBase64Encoded": False,
    }


def _body_too_large(event: dict, limit: int) -> ApiError | None:
    """`limit` is the settings' max_body_bytes (labbatch/api_limits.py)."""
    body = event.get("body") or ""
    # base64 bodies are a third larger than what they carry.
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
    if size <= limit:
        return None
    return ApiError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "body_too_large",
        f"body: {size:,} bytes; at most {limit:,}. Split the samples over several jobs.",
        field="body",
        details={"size_bytes": size, "limit_bytes": limit},
    )


def _body_not_json_text(event: dict) -> ApiError | None:
    """The contract is UTF-8 JSON: other media types (Powertools would parse form and
    multipart bodies into a submission) are a 415; undecodable bytes are refused like bad JSON."""
    body = event.get("body")
    if not body or str(event.get("httpMethod", "")).upper() != "POST":
        return None
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = str(headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type not in ("", "application/json"):
        return ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send the body as application/json")
    if event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            problem = {"field": "body", "message": "the body is not UTF-8 text", "type": "json_invalid"}
            return refused("invalid_request", "body: the body is not UTF-8 JSON", field="body", problems=[problem])
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
def lambda_handler(event: dict, context: Any) -> dict:
    try:
        rt = runtime()
    except SettingsError:
        logger.exception("The deployment is misconfigured")
        return _direct_error(ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "misconfigured", "The API is misconfigured"))
    unreadable = _body_too_large(event, rt.settings.max_body_bytes) or _body_not_json_text(event)
    if unreadable is not None:
        return _direct_error(unreadable)
    # The in-progress marker of an Idempotency-Key expires when this invocation would time out.
    rt.idempotency_config.register_lambda_context(context)
    # The TES routes (their own router) read the same settings, clients and ledger from here.
    app.append_context(runtime=rt)
    path = str(event.get("path") or "")
    if path.startswith("/v1/") and (mapped := tes_rules.tes_api_path(path)) is not None:
        # A TES client given the lab's own URL (py-tes 0.4 and nf-ga4gh append /v1/tasks): the
        # same routes as under /ga4gh/tes/v1, behind the same token authorizer. Anything else
        # under /v1/ stays as it is and matches no route.
        event = {**event, "path": mapped}
    return app.resolve(event, context)
