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
    return job_id_from(int(time.time() * 1000), os.urandom(10))


def job_id_from(at_millis: int, entropy: bytes) -> str:
    """A job id for a given moment and 10 bytes of entropy (random, or a hash when every
    delivery of the same event must name the same job)."""
    if len(entropy) != 10:
        raise ValueError(f"a job id takes 10 bytes of entropy, got {len(entropy)}")
    value = (at_millis << 80) | int.from_bytes(entropy, "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "j-" + "".join(reversed(chars))


def utc_timestamp(moment: datetime | None = None) -> str:
    """Fixed width, microseconds and Z, e.g. 2026-11-02T10:11:12.123456Z, so it sorts."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
