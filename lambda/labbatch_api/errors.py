"""One error shape for every refusal: {"error": {"code", "message", "details"}}.

Route code raises ApiError; the handler turns it (and Powertools' own validation and routing
failures) into that shape, so a client never has to parse two kinds of error body.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

# How long a caller should wait after a 503 before retrying; AWS throttles recover in seconds.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        if field is not None:
            self.details.setdefault("field", field)
        self.headers = dict(headers or {})


def iam_caller(event: Any, refusal: str = "The request carries no IAM caller identity") -> str:
    """The caller's ARN as API Gateway's IAM authorization passed it, or a 403 saying `refusal`."""
    arn = ((event.get("requestContext") or {}).get("identity") or {}).get("userArn")
    if not arn:
        raise ApiError(HTTPStatus.FORBIDDEN, "no_caller_identity", refusal)
    return arn


def refused(code: str, message: str, *, field: str | None = None, **details: Any) -> ApiError:
    """A request that can never succeed as sent (422): the caller must change it."""
    return ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, code, message, field=field, details=details)


def unavailable(code: str, message: str, **details: Any) -> ApiError:
    """AWS refused for now (throttled or failing after retries): the caller may retry later."""
    details.setdefault("retry_after_seconds", RETRY_AFTER_SECONDS)
    return ApiError(
        HTTPStatus.SERVICE_UNAVAILABLE,
        code,
        message,
        details=details,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def error_response(error: ApiError) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    return Response(
        status_code=int(error.status),
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=error.headers,
    )


# The error responses every route documents in the OpenAPI document.
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
