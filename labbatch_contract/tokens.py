"""TES bearer tokens: their format, how they are stored in the ledger and how one is checked.

No TES client signs SigV4, so a lab's IAM principals mint tokens (`POST /tokens`) that engines
send instead, as `Authorization: Bearer <token>` or `Basic base64(<anything>:<token>)` (py-tes
and Snakemake's plugin send Basic). One copy of these rules serves the API (mint, list,
revoke), the Lambda authorizer on the TES paths, and local mode's API Gateway front.

- A token reads `lbt_<id>_<secret>`: `id` is 16 lower-case hex digits (shown by `token list`,
  used to revoke), `secret` 43 URL-safe characters (32 random bytes). Only its hash is kept.
- Its ledger item: key `token#<id>`, `record_type` "token" (so the `by_created` index lists
  tokens apart from jobs, and job lists never see them), `name`, `owner` (the IAM ARN that
  minted it, recorded as `submitted_by` of every task sent with it), `created_at`, `expires_at_iso`
  (absent: no expiry), `salt` and `hash` (sha256 of salt + secret, hex), `revoked_at` once revoked,
  `last_used_at` (written by the API, never by the read-only authorizer).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Optional

from labbatch_contract.ids import utc_timestamp
from labbatch_contract.tes import TES_ROOTS

RECORD_TYPE_TOKEN = "token"
KEY_PREFIX = "token#"
TOKEN_PREFIX = "lbt"
TOKEN_ID_PATTERN = r"^[0-9a-f]{16}$"
MAX_EXPIRES_DAYS = 3650
_TOKEN = re.compile(r"^lbt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_ID = re.compile(TOKEN_ID_PATTERN)
# What the authorizer hands the handler (API Gateway's requestContext.authorizer).
CONTEXT_OWNER = "owner"
CONTEXT_TOKEN_ID = "token_id"


def token_key(token_id: str) -> str:
    return KEY_PREFIX + token_id


def valid_token_id(token_id: str) -> bool:
    return bool(_ID.match(token_id or ""))


def digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


def new_token(*, owner: str, name: str | None = None, expires_days: int | None = None,
              now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """A fresh token (shown once) and the ledger record that stands for it."""
    now = now or datetime.now(timezone.utc)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    record: dict[str, Any] = {
        "job_id": token_key(token_id), "record_type": RECORD_TYPE_TOKEN, "token_id": token_id,
        "name": name or None, "owner": owner, "created_at": utc_timestamp(now),
        "salt": salt, "hash": digest(salt, secret),
    }
    if expires_days is not None:
        record["expires_at_iso"] = utc_timestamp(now + timedelta(days=expires_days))
    return f"{TOKEN_PREFIX}_{token_id}_{secret}", record


def public_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """What `GET /tokens` shows of a record: never the salt or hash."""
    return {"id": record["token_id"], "name": record.get("name"), "owner": record.get("owner"),
            "created_at": record.get("created_at"), "expires_at": record.get("expires_at_iso"),
            "last_used_at": record.get("last_used_at"), "revoked_at": record.get("revoked_at")}


def parse(token: str) -> Optional[tuple[str, str]]:
    """(id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token or "")
    return (match.group(1), match.group(2)) if match else None


def from_authorization(header: str | None) -> Optional[str]:
    """The token in an Authorization header: `Bearer <token>`, or `Basic` of `<anything>:<token>`."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def check(token: str | None, get_record: Callable[[str], Optional[Mapping[str, Any]]],
          now: datetime | None = None) -> tuple[Optional[Mapping[str, Any]], str]:
    """(record, "ok") for a live token; (None, why) for a malformed, unknown, revoked or expired one.

    `get_record(key)` reads one ledger item by key (a consistent read, so a revoke is seen at once).
    """
    parsed = parse(token or "")
    if parsed is None:
        return None, "malformed"
    token_id, secret = parsed
    record = get_record(token_key(token_id))
    if not record or record.get("record_type") != RECORD_TYPE_TOKEN:
        return None, "unknown"
    if not hmac.compare_digest(digest(str(record.get("salt", "")), secret), str(record.get("hash", ""))):
        return None, "unknown"
    if record.get("revoked_at"):
        return None, "revoked"
    expires = record.get("expires_at_iso")
    if expires and utc_timestamp(now) >= str(expires):
        return None, "expired"
    return record, "ok"


def dynamodb_getter(client: Any, table: str) -> Callable[[str], Optional[dict[str, Any]]]:
    """`get_record` for `check`, reading with a boto3 DynamoDB client."""
    from labbatch_contract.ledger import from_item

    def get(key: str) -> Optional[dict[str, Any]]:
        item = client.get_item(TableName=table, Key={"job_id": {"S": key}}, ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    return get


def is_tes_path(path: str) -> bool:
    """The paths a token opens, in the API and in local mode's front; everything else is SigV4 only."""
    return path.startswith(TES_ROOTS)
