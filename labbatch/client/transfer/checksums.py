"""Checksums of local files as S3 computes them: whole-file SHA-256, or the composite of a multipart
upload's parts over the part boundaries the transfer manager uses."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labbatch.client.sdk import LabBatchError
from labbatch.client.transfer import MULTIPART_BYTES, PART_BYTES, READ_BYTES


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str  # hex, of the whole file
    s3_sha256: str  # base64, as S3 reports ChecksumSHA256 (composite for multipart, without "-N")
    parts: int  # 0 for a single-part upload


def part_size_for(size: int) -> int:
    from s3transfer.utils import ChunksizeAdjuster

    return ChunksizeAdjuster().adjust_chunksize(PART_BYTES, size)


def digest_file(path: Path) -> FileDigest:
    """One pass: the file's SHA-256 and the checksum S3 will report after our upload."""
    size = path.stat().st_size
    multipart = size >= MULTIPART_BYTES
    part_bytes = part_size_for(size) if multipart else size
    whole = hashlib.sha256()
    part_digests: list[bytes] = []
    part = hashlib.sha256()
    in_part = 0
    read = 0
    with path.open("rb") as stream:
        while True:
            block = stream.read(min(READ_BYTES, part_bytes - in_part) if multipart else READ_BYTES)
            if not block:
                break
            read += len(block)
            whole.update(block)
            if multipart:
                part.update(block)
                in_part += len(block)
                if in_part == part_bytes:
                    part_digests.append(part.digest())
                    part, in_part = hashlib.sha256(), 0
    if multipart and in_part:
        part_digests.append(part.digest())
    if read != size:
        raise LabBatchError("file_changed", f"{path} changed while it was read ({size:,} bytes, then {read:,})")
    if multipart:
        s3_value = base64.b64encode(hashlib.sha256(b"".join(part_digests)).digest()).decode()
    else:
        s3_value = base64.b64encode(whole.digest()).decode()
    return FileDigest(size, whole.hexdigest(), s3_value, len(part_digests))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(READ_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def check_s3_checksum(head: Mapping[str, Any], digest: FileDigest, uri: str) -> str | None:
    """What is wrong with the object S3 holds, or None when its size and SHA-256 are ours."""
    if head.get("ContentLength") != digest.size:
        return f"S3 holds {head.get('ContentLength'):,} bytes, the file has {digest.size:,}"
    reported = head.get("ChecksumSHA256")
    if not reported:
        return "S3 reports no SHA-256 checksum for it, so it cannot be verified"
    value, _, parts = str(reported).partition("-")
    if value != digest.s3_sha256 or (parts and digest.parts and int(parts) != digest.parts):
        kind = f"composite of {digest.parts} parts" if digest.parts else "whole object"
        return f"checksum mismatch (SHA-256, {kind}): S3 reports {reported}, the file gives {digest.s3_sha256}"
    return None
