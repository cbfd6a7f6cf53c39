"""`labbatch upload`, and the uploads `labbatch submit` makes of local paths: checksummed, verified
against S3's own checksum, and reused when the same content is already there."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labbatch.error_line import print_error
from labbatch.client.sdk import LabBatchError
from labbatch.client.labdata import LabData, aws_code, aws_reason
from labbatch.client.transfer import RESERVED_PREFIXES, SUBMIT_UPLOADS_PREFIX, transfer_config
from labbatch.client.transfer.checksums import FileDigest, check_s3_checksum, digest_file
from labbatch.client.transfer.progress import Progress, files_text, human_bytes


@dataclass(frozen=True)
class Upload:
    path: Path
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Uploaded:
    upload: Upload
    digest: FileDigest
    reused: bool = False


def upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", metavar="PATH", nargs="+",
                        help="files and folders (a folder is uploaded whole, keeping its name and layout)")
    parser.add_argument("--to", metavar="PREFIX", default="",
                        help="key prefix in the bucket, e.g. run42/ (default: the bucket's top)")
    parser.add_argument("--references", action="store_true",
                        help="to the lab's references bucket (default: its inputs bucket)")


def run_upload(args: argparse.Namespace) -> int:
    prefix = normalise_prefix(args.to)
    files = collect_files([Path(p) for p in args.paths])
    data = LabData.from_args(args)
    bucket = data.buckets()["references" if args.references else "inputs"]
    uploads = [Upload(path, bucket, prefix + relative) for path, relative in files]
    duplicates = _duplicates(u.key for u in uploads)
    if duplicates:
        raise LabBatchError("duplicate_key", f"several paths would become s3://{bucket}/{duplicates[0]}: "
                            "upload them with different --to prefixes")
    done = upload_files(data, uploads)
    if args.json:
        sys.stdout.write(json.dumps({"uploaded": [
            {"path": str(u.upload.path), "uri": u.upload.uri, "size": u.digest.size, "sha256": u.digest.sha256}
            for u in done]}, indent=2) + "\n")
    else:
        for item in done:
            print(item.upload.uri)
        total = sum(u.digest.size for u in done)
        print(f"labbatch: uploaded {files_text(len(done))} ({human_bytes(total)}) to "
              f"s3://{bucket}/{prefix}; S3's SHA-256 checksums match the files", file=sys.stderr)
    return 0


def normalise_prefix(prefix: str) -> str:
    if prefix.startswith("s3://"):
        raise LabBatchError("bad_prefix", f"--to {prefix}: give a key prefix (e.g. run42/), not a URI; "
                            "the bucket is the lab's inputs (or, with --references, references) bucket")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if any(part in (".", "..") for part in prefix.split("/")[:-1]) or "//" in prefix:
        raise LabBatchError("bad_prefix", f"--to {prefix}: empty, '.' or '..' segments are not allowed")
    for reserved in RESERVED_PREFIXES:
        if prefix.startswith(reserved):
            raise LabBatchError("reserved_prefix", f"--to {prefix}: objects under {reserved} expire "
                                "(the lab's scratch area); choose another prefix")
    return prefix


def collect_files(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(file, key relative to the prefix): a file by its name, a folder's files under the folder's name."""
    files: list[tuple[Path, str]] = []
    for path in paths:
        if not path.exists():
            raise LabBatchError("no_such_file", f"{path}: no such file or folder")
        if path.is_dir():
            base = path.resolve().name
            found = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    file = Path(root) / name
                    if file.is_file():
                        found.append((file, f"{base}/{file.relative_to(path).as_posix()}"))
            if not found:
                raise LabBatchError("empty_folder", f"{path}: the folder holds no files")
            files.extend(found)
        elif path.is_file():
            files.append((path, path.name))
        else:
            raise LabBatchError("not_a_file", f"{path}: not a regular file or folder")
        for file, _ in files[-1:]:
            if not os.access(file, os.R_OK):
                raise LabBatchError("unreadable", f"{file}: permission denied")
    return files


def _duplicates(keys: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return [key for key in keys if key in seen or seen.add(key)]


def upload_files(data: LabData, uploads: Sequence[Upload], *, reuse: bool = False, description: str = "upload",
                 known: Mapping[Path, FileDigest] | None = None) -> list[Uploaded]:
    """Uploads (or, with `reuse`, keeps an identical object already there), then verifies each object."""
    from boto3.s3.transfer import TransferManager
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = data.client("s3")
    total = sum(u.path.stat().st_size for u in uploads)
    results: list[Uploaded | None] = [None] * len(uploads)
    problems: list[LabBatchError] = []
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(uploads)))) as hashers, \
            Progress(description, total, len(uploads)) as progress, \
            TransferManager(s3, transfer_config()) as manager:
        digests = [_done(known[u.path]) if known and u.path in known else hashers.submit(digest_file, u.path)
                   for u in uploads]
        transfers: dict[int, Any] = {}
        for index, upload in enumerate(uploads):
            if reuse:
                digest = digests[index].result()
                if _object_matches(s3, upload, digest):
                    results[index] = Uploaded(upload, digest, reused=True)
                    progress.bytes(digest.size)
                    progress.file_done()
                    continue
            transfers[index] = manager.upload(str(upload.path), upload.bucket, upload.key,
                                              extra_args={"ChecksumAlgorithm": "SHA256"},
                                              subscribers=[progress.subscriber()])
        verify = ThreadPoolExecutor(max_workers=16)
        checks = {}
        for index, future in transfers.items():
            upload = uploads[index]
            try:
                future.result()
            except (ClientError, BotoCoreError, OSError) as error:
                problems.append(_upload_error(upload, error))
                continue
            checks[index] = verify.submit(_verify_upload, s3, upload, digests[index])
        for index, check in checks.items():
            try:
                results[index] = check.result()
            except LabBatchError as error:
                problems.append(error)
            progress.file_done()
        verify.shutdown()
    for problem in problems[:-1]:
        print_error(problem.code, problem.message)
    if problems:
        last = problems[-1]
        raise LabBatchError(last.code, last.message + (f" ({len(problems)} files failed)" if len(problems) > 1 else ""))
    return [r for r in results if r is not None]


def _done(value: Any) -> Any:
    from concurrent.futures import Future

    future: Future = Future()
    future.set_result(value)
    return future


def _upload_error(upload: Upload, error: BaseException) -> LabBatchError:
    code = aws_code(error)
    if code in ("AccessDenied", "Forbidden", "403"):
        return LabBatchError("access_denied", f"{upload.path} -> {upload.uri}: {aws_reason(error)} (your credentials "
                             f"need s3:PutObject on s3://{upload.bucket}/*)")
    return LabBatchError("upload_failed", f"{upload.path} -> {upload.uri}: {aws_reason(error)}")


def _verify_upload(s3: Any, upload: Upload, digest_future: Any) -> Uploaded:
    from botocore.exceptions import BotoCoreError, ClientError

    digest: FileDigest = digest_future.result()
    try:
        head = s3.head_object(Bucket=upload.bucket, Key=upload.key, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError) as error:
        raise LabBatchError("upload_unverified", f"{upload.uri}: cannot read it back: {aws_reason(error)}") from None
    problem = check_s3_checksum(head, digest, upload.uri)
    if problem:
        try:  # a corrupt object must not be left where a job would read it
            s3.delete_object(Bucket=upload.bucket, Key=upload.key)
            fate = "the object was deleted"
        except (ClientError, BotoCoreError) as error:
            fate = f"deleting it failed ({aws_reason(error)}): do not use it"
        raise LabBatchError("checksum_mismatch", f"{upload.path} -> {upload.uri}: {problem}; {fate}")
    return Uploaded(upload, digest)


def _object_matches(s3: Any, upload: Upload, digest: FileDigest) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = s3.head_object(Bucket=upload.bucket, Key=upload.key, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError):
        return False
    return check_s3_checksum(head, digest, upload.uri) is None


# -- submit with local paths ------------------------------------------------------------------------


def is_uri(value: str) -> bool:
    return value.startswith("s3://")


def stage_local_inputs(args: argparse.Namespace, inputs: Sequence[str],
                       samples: list[dict[str, Any]] | None) -> tuple[list[str], list[dict[str, Any]] | None]:
    """`labbatch submit`'s inputs (and a sample sheet's) that are local files, uploaded; the rest as given.

    A sample sheet's relative paths are relative to the sheet's own folder. Files go to the inputs
    bucket under uploads/<first 16 hex of their sha256>/<name>: the same file is uploaded once.
    """
    base = Path(args.samples).parent if getattr(args, "samples", None) else Path(".")
    local: dict[str, Path] = {}
    for value in inputs:
        if not is_uri(value):
            local[value] = _local_input(Path(value), value)
    for sample in samples or []:
        for value in sample.get("inputs") or []:
            if isinstance(value, str) and not is_uri(value) and value not in local:
                path = Path(value).expanduser()
                local[value] = _local_input(path if path.is_absolute() else base / path,
                                            f"{value} (sample {sample.get('name')!r} of {args.samples})")
    if not local:
        return list(inputs), samples
    data = LabData.from_args(args)
    bucket = data.buckets()["inputs"]
    paths = list(dict.fromkeys(local.values()))
    # The key needs the file's content hash: hash first (the upload is verified against the same digest).
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = dict(zip(paths, pool.map(digest_file, paths)))
    keys = {path: Upload(path, bucket, f"{SUBMIT_UPLOADS_PREFIX}{digests[path].sha256[:16]}/{path.name}")
            for path in paths}
    done = upload_files(data, list(keys.values()), reuse=True, description="uploading inputs", known=digests)
    for item in done:
        verb = "already in the lab, not uploaded again:" if item.reused else "uploaded"
        print(f"labbatch: {verb} {item.upload.path} ({human_bytes(item.digest.size)}) -> {item.upload.uri}",
              file=sys.stderr)
    uri_of = {value: keys[path].uri for value, path in local.items()}
    new_inputs = [uri_of.get(value, value) for value in inputs]
    new_samples = None if samples is None else [
        {**sample, "inputs": [uri_of.get(v, v) if isinstance(v, str) else v for v in sample.get("inputs") or []]}
        for sample in samples]
    return new_inputs, new_samples


def _local_input(path: Path, label: str) -> Path:
    if not path.exists():
        raise LabBatchError("no_such_file", f"input {label}: no such file (inputs are s3:// URIs in the lab's "
                            "buckets, or local files, which are uploaded first)")
    if path.is_dir():
        raise LabBatchError("is_a_directory", f"input {label} is a folder: submit takes files; upload the folder "
                            f"with `labbatch upload {path}` and pass the s3:// URIs it prints")
    if not path.is_file():
        raise LabBatchError("not_a_file", f"input {label}: not a regular file")
    return path
