"""`labbatch download s3://<lab bucket>/<prefix>`: everything under a prefix of the lab's buckets.

Workflow engines keep their outputs under their own prefix (Snakemake's storage prefix
`tes/snakemake/...`, Nextflow's work directory and publishDir under `nextflow/`), not under a
job's `jobs/<id>/` with a manifest, so `labbatch results` has nothing to show for them. This
fetches any prefix of the lab's own buckets and verifies each file against what S3 itself holds
(no manifest here): the size always, and the object's own checksum, SHA-256 or CRC32 (what the
SDKs and the CLI store) or the MD5 of a single-part ETag. A file that cannot be verified beyond
its size is named, never passed off as checked.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from labbatch.client.sdk import LabBatchError
from labbatch.client.labdata import LabData, aws_reason, split_uri
from labbatch.client.transfer import PART_SUFFIX, READ_BYTES
from labbatch.client.transfer.progress import human_bytes

# Checksums S3 keeps of a whole object, and how to compute each here.
_WHOLE_OBJECT = {"ChecksumSHA256": "sha256", "ChecksumCRC32": "crc32"}


@dataclass(frozen=True)
class Fetched:
    key: str
    path: str  # relative to the destination
    size: int
    verified_by: str  # "sha256", "crc32", "md5", or "size only"


def download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", metavar="S3_URI", help="s3://<one of the lab's buckets>/<prefix>")
    parser.add_argument("--to", metavar="DIR", type=Path, help="where to put it (default: ./<last part of the prefix>)")


def run_download(args: argparse.Namespace) -> int:
    if not args.uri.startswith("s3://"):
        raise LabBatchError("bad_uri", f"{args.uri}: give s3://<one of the lab's buckets>/<prefix>")
    data = LabData.from_args(args)
    bucket, prefix = split_uri(args.uri)
    lab_buckets = data.buckets()
    if bucket not in lab_buckets.values():
        raise LabBatchError("not_a_lab_bucket", f"{args.uri}: {bucket} is not one of this lab's buckets "
                            f"({', '.join(sorted(lab_buckets.values()))})")
    s3 = data.client("s3")
    keys = _listed(s3, bucket, prefix)
    if prefix and not prefix.endswith("/"):
        # s3://b/run1 means the folder run1 (or the one object), not run10/ beside it; a prefix
        # that names no folder or object keeps S3's meaning: every key starting so.
        exact = [(k, n) for k, n in keys if k == prefix or k.startswith(prefix + "/")]
        keys = exact or keys
    if not keys:
        raise LabBatchError("nothing_there", f"{args.uri}: no object under this prefix")
    destination = args.to or Path(PurePosixPath(prefix.rstrip("/")).name or bucket)
    fetched = [_fetch(s3, bucket, key, size, destination, _relative(prefix, key)) for key, size in keys]
    unverified = [f.path for f in fetched if f.verified_by == "size only"]
    if args.json:
        sys.stdout.write(json.dumps({"uri": args.uri, "directory": str(destination), "files": [
            {"path": f.path, "size": f.size, "verified_by": f.verified_by, "uri": f"s3://{bucket}/{f.key}"}
            for f in fetched]}, indent=2) + "\n")
    else:
        total = sum(f.size for f in fetched)
        print(f"{len(fetched)} file(s) ({human_bytes(total)}) of {args.uri} in {destination}/, each checked "
              "against S3's own checksum" + (f" except {len(unverified)} S3 keeps none for (size only: "
                                             f"{', '.join(unverified[:5])})" if unverified else ""))
    return 0


def _listed(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    from botocore.exceptions import BotoCoreError, ClientError

    found = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            # "Folder" markers (keys ending in /) hold nothing to download.
            found += [(o["Key"], o["Size"]) for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except (ClientError, BotoCoreError) as error:
        raise LabBatchError("list_failed", f"s3://{bucket}/{prefix}: {aws_reason(error)}") from None
    return found


def _relative(prefix: str, key: str) -> str:
    """Where an object lands under the destination: the prefix taken as a folder (with or without
    its trailing slash), or an object's own name when the URI names exactly one object."""
    if key == prefix:
        relative = PurePosixPath(key).name
    elif prefix == "" or prefix.endswith("/"):
        relative = key[len(prefix):]
    elif key.startswith(prefix + "/"):
        relative = key[len(prefix) + 1:]
    else:  # a prefix that ends inside a name ("runs/a" matches "runs/ab/x"): from its folder on
        relative = key[len(prefix.rsplit("/", 1)[0]) + 1:] if "/" in prefix else key
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", ".") for p in parts) or relative.startswith("/"):
        raise LabBatchError("unsafe_key", f"s3 key {key!r} would land outside the destination")
    return relative


def _fetch(s3: Any, bucket: str, key: str, size: int, destination: Path, relative: str) -> Fetched:
    from botocore.exceptions import BotoCoreError, ClientError

    target = destination / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    part = Path(str(target) + PART_SUFFIX)
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        s3.download_file(bucket, key, str(part))
    except (ClientError, BotoCoreError, OSError) as error:
        part.unlink(missing_ok=True)
        raise LabBatchError("download_failed", f"s3://{bucket}/{key}: {aws_reason(error)}") from None
    problem, verified_by = _verify(part, head, size)
    if problem:
        part.unlink(missing_ok=True)
        raise LabBatchError("checksum_mismatch" if verified_by != "size" else "size_mismatch",
                            f"s3://{bucket}/{key}: {problem}; the download was removed")
    os.replace(part, target)
    return Fetched(key, relative, size, verified_by)


def _verify(path: Path, head: dict[str, Any], listed_size: int) -> tuple[str | None, str]:
    size = path.stat().st_size
    if size != listed_size or size != head.get("ContentLength", size):
        return f"downloaded {size:,} bytes, S3 lists {listed_size:,}", "size"
    etag = str(head.get("ETag", "")).strip('"')
    # A multipart object's checksum is the whole file's only when S3 says FULL_OBJECT; otherwise
    # it is a checksum of the parts' checksums ("-N" in real S3; some emulators drop the suffix).
    whole = "-" not in etag or head.get("ChecksumType") == "FULL_OBJECT"
    for field, kind in _WHOLE_OBJECT.items():
        value = head.get(field)
        if value and whole and "-" not in value:
            got = _digest(path, kind)
            return (None if got == value else f"{kind} {got} does not match S3's {value}"), kind
    if len(etag) == 32 and "-" not in etag and head.get("ServerSideEncryption") != "aws:kms":
        got = _digest(path, "md5")
        return (None if got == etag else f"md5 {got} does not match S3's ETag {etag}"), "md5"
    return None, "size only"


def _digest(path: Path, kind: str) -> str:
    if kind == "crc32":
        crc = 0
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(READ_BYTES), b""):
                crc = zlib.crc32(block, crc)
        return base64.b64encode(crc.to_bytes(4, "big")).decode()
    digest = hashlib.new(kind)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(READ_BYTES), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode() if kind == "sha256" else digest.hexdigest()
