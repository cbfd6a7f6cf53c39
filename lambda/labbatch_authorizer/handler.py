"""The Lambda REQUEST authorizer on the lab API's TES subtree (/ga4gh/{proxy+}).

Accepts `Authorization: Bearer <token>` or `Basic base64(<anything>:<token>)`, looks the token's
hash up in the lab's ledger (read-only: GetItem on that table alone), and answers Allow with the
token's owner as the caller, or Deny for a missing, malformed, unknown, revoked or expired one.
The rules are labbatch_contract.tokens, the same code local mode's front runs.

Environment: LABBATCH_TABLE (the ledger), plus AWS_REGION.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3

from labbatch_contract import tokens


@functools.cache
def _get_record():
    return tokens.dynamodb_getter(boto3.client("dynamodb"), os.environ["LABBATCH_TABLE"])


def _header(event: dict, name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return value
    return None


def policy(effect: str, principal: str, method_arn: str, context: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}]},
    }
    if context:
        answer["context"] = context
    return answer


def decide(event: dict, get_record) -> dict[str, Any]:
    method_arn = event.get("methodArn", "*")
    token = tokens.from_authorization(_header(event, "authorization"))
    record, why = tokens.check(token, get_record)
    if record is None:
        print(f"labbatch tes authorizer: deny ({why})")  # never the token itself
        return policy("Deny", "anonymous", method_arn)
    return policy("Allow", str(record["owner"]), method_arn,
                  {tokens.CONTEXT_OWNER: str(record["owner"]), tokens.CONTEXT_TOKEN_ID: str(record["token_id"])})


def lambda_handler(event: dict, _context: Any) -> dict[str, Any]:
    return decide(event, _get_record())
