"""Which checksum S3 gives for an object that can be checked locally, and computing it."""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

_CHUNK = 8 << 20  # large reads let hashlib and zlib release the GIL and run on both cores
_PLAIN_MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # sha256 | sha1 | crc32 | md5
    value: str  # as S3 spells it: base64 for x-amz-checksum-*, hex for an ETag MD5


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


_HASHERS: dict[str, Callable[[], Any]] = {
    "sha256": hashlib.sha256,
    "sha1": hashlib.sha1,
    "crc32": _Crc32,
    "md5": hashlib.md5,
}
# Strongest first. CRC32C and CRC64NVME need the CRT, which the image does not carry; an object
# that has only those falls back to its ETag or to the size check.
_HEADER_FIELDS = (("sha256", "ChecksumSHA256"), ("sha1", "ChecksumSHA1"), ("crc32", "ChecksumCRC32"))


def expected_checksum(head: dict[str, Any]) -> Checksum | None:
    """From a HeadObject or GetObject (ChecksumMode=ENABLED) response, or None when nothing is checkable."""
    multipart = "-" in head.get("ETag", "")
    # A multipart object's additional checksum is a checksum of part checksums unless S3 says
    # FULL_OBJECT; some S3 implementations (moto among them) omit both the type and the "-N"
    # suffix, and checking such a value against the file would fail good downloads.
    if head.get("ChecksumType") == "FULL_OBJECT" or (not multipart and head.get("ChecksumType") != "COMPOSITE"):
        for algorithm, field in _HEADER_FIELDS:
            value = head.get(field)
            if value and "-" not in value:
                return Checksum(algorithm, value)
    # The ETag is the MD5 of the bytes only for single-part uploads without SSE-KMS or SSE-C.
    match = _PLAIN_MD5_ETAG.fullmatch(head.get("ETag", ""))
    encryption = head.get("ServerSideEncryption")
    if match and encryption in (None, "AES256") and not head.get("SSECustomerAlgorithm"):
        return Checksum("md5", match.group(1).lower())
    return None


class Hasher:
    """Computes one algorithm over bytes as they stream past, spelt as S3 spells it."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hasher = _HASHERS[algorithm]()

    def update(self, data: bytes) -> None:
        self._hasher.update(data)

    def value(self) -> str:
        return _spell(self.algorithm, self._hasher.digest())


def file_checksum(path: Path, algorithm: str) -> str:
    """The checksum of a local file, spelt as S3 spells it so the two compare as strings."""
    hasher = Hasher(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.value()


def _spell(algorithm: str, digest: bytes) -> str:
    return digest.hex() if algorithm == "md5" else base64.b64encode(digest).decode("ascii")


def sha256_hex(path: Path) -> str:
    return base64.b64decode(file_checksum(path, "sha256")).hex()
