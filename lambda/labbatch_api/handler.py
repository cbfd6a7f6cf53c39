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
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from botocore.exceptions import BotoCoreError, ClientError

from labbatch_api.aws_faults import error_code, is_retryable
from labbatch_api.errors import ERROR_RESPONSES, ApiError, error_response, refused, unavailable
from labbatch_api.job_models import ErrorBody
from labbatch_api.job_routes import router as job_router
from labbatch_api.report_routes import router as report_router
from labbatch_api.runtime import runtime
from labbatch_api.tes_routes import PREFIX as TES_PREFIX, router as tes_router
from labbatch_api.token_routes import router as token_router
from labbatch_contract import tes as tes_rules
from labbatch_contract.settings import SettingsError

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
app.include_router(job_router)
app.include_router(tes_router, prefix=TES_PREFIX)
app.include_router(token_router)
app.include_router(report_router)


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
    """`limit` is the settings' max_body_bytes (labbatch/lab/api_limits.py)."""
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
