"""TES bearer tokens on the job API: POST /tokens, GET /tokens, DELETE /tokens/{id}.

SigV4 (IAM) like every job-API route, so only the lab's IAM principals can mint, list or revoke;
a request that arrived with a token (requestContext.authorizer, no IAM identity) is refused.
The token format, storage and check are labbatch_contract.tokens; the secret is shown once, in the
answer to POST, and only its salted hash is kept.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Optional

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labbatch_api.errors import ApiError, iam_caller, refused
from labbatch_contract import tokens
from labbatch_contract.ids import utc_timestamp
from labbatch_contract.ledger import BY_CREATED_INDEX, from_item, is_condition_failure, to_item

router = APIGatewayRouter()
MAX_TOKENS_LISTED = 1000


class CreateTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Optional[str] = Field(default=None, min_length=1, max_length=128)
    expires_days: Optional[int] = Field(default=None, ge=1, le=tokens.MAX_EXPIRES_DAYS)


def _runtime():
    """The handler's settings, clients and ledger, which the handler puts in the resolver's context."""
    return router.context["runtime"]


def _iam_caller() -> str:
    return iam_caller(router.current_event.raw_event,
                      "Tokens are managed by the lab's IAM principals only: sign the request with SigV4")


def _answer(status: int, body: Any) -> Response:
    import json

    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@router.post("/tokens", include_in_schema=False)
def create_token():
    owner = _iam_caller()
    try:
        request = CreateTokenRequest.model_validate(router.current_event.json_body or {})
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "body"
        raise refused("invalid_request", f"{field}: {problem['msg']}", field=field)
    rt = _runtime()
    token, record = tokens.new_token(owner=owner, name=request.name, expires_days=request.expires_days)
    rt.clients.dynamodb.put_item(TableName=rt.settings.table, Item=to_item(record),
                                 ConditionExpression="attribute_not_exists(job_id)")
    return _answer(HTTPStatus.CREATED, {**tokens.public_view(record), "token": token})


@router.get("/tokens", include_in_schema=False)
def list_tokens():
    _iam_caller()
    rt = _runtime()
    found: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": rt.settings.table, "IndexName": BY_CREATED_INDEX, "ScanIndexForward": False,
        "KeyConditionExpression": "record_type = :t", "ExpressionAttributeValues": {":t": {"S": tokens.RECORD_TYPE_TOKEN}}}
    while len(found) < MAX_TOKENS_LISTED:
        page = rt.clients.dynamodb.query(**request)
        found += [tokens.public_view(from_item(item)) for item in page.get("Items", [])]
        if not page.get("LastEvaluatedKey"):
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return _answer(HTTPStatus.OK, {"tokens": found[:MAX_TOKENS_LISTED]})


@router.delete("/tokens/<token_id>", include_in_schema=False)
def revoke_token(token_id: str):
    caller = _iam_caller()
    if not tokens.valid_token_id(token_id):
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_token", f"token_id: there is no token {token_id!r}",
                       field="token_id")
    rt = _runtime()
    try:
        answer = rt.clients.dynamodb.update_item(
            TableName=rt.settings.table, Key={"job_id": {"S": tokens.token_key(token_id)}},
            UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :t), revoked_by = if_not_exists(revoked_by, :c)",
            ConditionExpression="record_type = :token",
            ExpressionAttributeValues=to_item({":t": utc_timestamp(), ":c": caller, ":token": tokens.RECORD_TYPE_TOKEN}),
            ReturnValues="ALL_NEW")
    except ClientError as error:
        if is_condition_failure(error):
            raise ApiError(HTTPStatus.NOT_FOUND, "no_such_token", f"token_id: there is no token {token_id!r}",
                           field="token_id") from None
        raise
    return _answer(HTTPStatus.OK, tokens.public_view(from_item(answer["Attributes"])))


def token_caller(event: dict) -> Optional[tuple[str, str]]:
    """(owner, token id) when the request came in with a token (the authorizer's context)."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    owner, token_id = context.get(tokens.CONTEXT_OWNER), context.get(tokens.CONTEXT_TOKEN_ID)
    return (owner, token_id) if owner and token_id else None


def note_use(token_id: str) -> None:
    """`last_used_at` on the token (the authorizer only reads); at most once a minute per token."""
    rt = _runtime()
    now = utc_timestamp()
    try:
        rt.clients.dynamodb.update_item(
            TableName=rt.settings.table, Key={"job_id": {"S": tokens.token_key(token_id)}},
            UpdateExpression="SET last_used_at = :t",
            ConditionExpression="record_type = :token AND (attribute_not_exists(last_used_at) OR last_used_at < :before)",
            ExpressionAttributeValues=to_item({":t": now, ":token": tokens.RECORD_TYPE_TOKEN,
                                               ":before": now[:16]}))
    except ClientError:
        pass  # a note, never a reason to fail the request
