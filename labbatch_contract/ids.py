"""Job ids and ledger timestamps: both sort by time as plain strings."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

JOB_ID_PATTERN = r"^j-[0-9a-z]{26}$"
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_job_id() -> str:
    """`j-` + a lower-case ULID: 48 bits of milliseconds then 80 random bits, 26 characters.

    Lower case because the id is a path segment of the job's S3 output prefix.
    """
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "j-" + "".join(reversed(chars))


def utc_timestamp(moment: datetime | None = None) -> str:
    """Fixed width, microseconds and Z, e.g. 2026-11-02T10:11:12.123456Z, so it sorts."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
