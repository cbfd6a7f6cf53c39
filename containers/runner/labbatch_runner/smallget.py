"""Small inputs: one plain GET each, verified against that GET's own response.

For an object of a few KiB, the request is the cost: the bulk engine's HEAD before its GET
doubles it, and a process start per batch adds to it. A GET with `ChecksumMode=ENABLED` carries
everything a HEAD would (checksums, ETag, encryption), describing exactly the bytes it returns,
so nothing else needs asking.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checksums import Checksum, Hasher, expected_checksum
from .s3client import describe_client_error
from .s3uri import S3Uri

# Below one s5cmd part (16 MiB) s5cmd makes a single GET too, so it brings nothing but its HEAD;
# 8 MiB keeps a margin and is where awscli and boto3 switch to ranged parts. Not measured on
# moto, where one GET wins at any size (README.md, "Engine").
SMALL_OBJECT_BYTES = 8 << 20
GET_THREADS = 32
# botocore retries a failed request (5xx, throttling, refused connections) itself; a body cut
# off mid-stream arrives after the request succeeded, so that retry is ours.
BODY_ATTEMPTS = 5
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Got:
    size: int  # bytes written
    expected: Checksum | None  # what the GET response says the bytes are
    actual: str | None  # the same algorithm over the bytes received


class GetFailed(Exception):
    """The object could not be fetched (after retries); the message is one line."""


def get_to_file(s3: Any, uri: S3Uri, path: Path, etag: str | None = None) -> Got:
    """`etag`: the version that must come (the reference cache files it under that ETag)."""
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError

    path.parent.mkdir(parents=True, exist_ok=True)
    pinned = {"IfMatch": etag} if etag else {}
    for attempt in range(1, BODY_ATTEMPTS + 1):
        try:
            response = s3.get_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED", **pinned)
        except ClientError as exc:
            if etag and exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise GetFailed(f"it changed since it was sized (no longer ETag {etag}); run the job again") from None
            raise GetFailed(describe_client_error(exc)) from None
        except BotoCoreError as exc:
            raise GetFailed(str(exc)) from None
        expected = expected_checksum(response)
        hasher = Hasher(expected.algorithm) if expected else None
        try:
            size = _write_body(response["Body"], path, hasher)
        except (IncompleteReadError, HTTPClientError) as exc:
            if attempt == BODY_ATTEMPTS:
                raise GetFailed(f"{exc} (after {attempt} attempts)") from None
            time.sleep(min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0))
            continue
        except OSError as exc:
            raise GetFailed(str(exc)) from None
        return Got(size, expected, hasher.value() if hasher else None)
    raise AssertionError("unreachable")


def _write_body(body: Any, path: Path, hasher: Hasher | None) -> int:
    from botocore.exceptions import FlexibleChecksumError

    size = 0
    try:
        with open(path, "wb") as handle:
            while True:
                try:
                    chunk = body.read(_CHUNK)
                except FlexibleChecksumError:
                    # botocore checks some checksums itself, at the end of the stream, and also
                    # where S3 implementations mislabel a multipart checksum; our own check
                    # (checksums.expected_checksum) decides, and names both values.
                    break
                if not chunk:
                    break
                handle.write(chunk)
                size += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
    finally:
        body.close()
    return size
