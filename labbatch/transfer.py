"""`labbatch upload`, `labbatch results`, and the uploads `labbatch submit` makes of local paths.

Uploads go through boto3's transfer manager (parallel across files, multipart above
MULTIPART_BYTES) with `ChecksumAlgorithm=SHA256`: S3 checks every request's SHA-256 as it
arrives, and afterwards the object's checksum, as S3 reports it (HEAD, `ChecksumMode=ENABLED`),
is compared with the one computed here from the local file: the SHA-256 of the whole file for a
single-part upload, or S3's composite for a multipart one (the SHA-256 of the parts' SHA-256
digests, `-N` parts), computed over the same part boundaries the transfer manager uses.

Results are checked against the runner's `manifest.json`: every output's size and sha256
(containers/runner/README.md). A download goes to `<file>.labbatch-part` first and becomes the
file only once verified; a file that fails twice is removed and named in the error, never kept.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from labbatch.error_line import print_error
from labbatch.client import FINAL_STATUSES, LabBatchError
from labbatch.labdata import LabData, aws_code, aws_reason, split_uri
from labbatch_contract import outcome

MiB = 1024 * 1024
MULTIPART_BYTES = 8 * MiB
PART_BYTES = 8 * MiB
MAX_CONCURRENCY = 10
READ_BYTES = 1 * MiB
# Where `labbatch submit` puts local files: content-addressed, so a second submit of the same
# file reuses the object, and two people's `reads.fq.gz` never overwrite each other.
SUBMIT_UPLOADS_PREFIX = "uploads/"
# The storage stack expires work/; nothing a scientist uploads should go there.
RESERVED_PREFIXES = ("work/",)
PART_SUFFIX = ".labbatch-part"


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=PART_BYTES,
                          max_concurrency=MAX_CONCURRENCY, use_threads=True)


# -- checksums -------------------------------------------------------------------------------------


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


# -- progress ----------------------------------------------------------------------------------------


class Progress:
    """A byte bar and a file count on stderr (rich); nothing when stderr is not a terminal."""

    def __init__(self, description: str, total_bytes: int, files: int):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress as RichProgress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        console = Console(stderr=True, highlight=False)
        self._files = files
        self._done = 0
        self._lock = threading.Lock()
        self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                                      disable=not console.is_terminal, transient=False)
        self._description = description
        self._task = self._progress.add_task(self._label(), total=total_bytes)

    def _label(self) -> str:
        return f"{self._description} {self._done}/{self._files} files"

    def __enter__(self) -> Progress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def bytes(self, amount: int) -> None:
        self._progress.update(self._task, advance=amount)

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            self._progress.update(self._task, description=self._label())

    def subscriber(self) -> Any:
        from s3transfer.subscribers import BaseSubscriber

        progress = self

        class _Subscriber(BaseSubscriber):
            def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
                progress.bytes(bytes_transferred)

        return _Subscriber()


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def human_bytes(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


# -- upload ------------------------------------------------------------------------------------------


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
        print(f"labbatch: uploaded {_files(len(done))} ({human_bytes(total)}) to "
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


# -- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    sample: str | None  # an array child's sample name
    path: str  # relative to the job's (or child's) output prefix
    bucket: str
    key: str
    size: int
    sha256: str

    @property
    def local_path(self) -> str:
        return f"{self.sample}/{self.path}" if self.sample is not None else self.path


def results_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", help="a job id (j-...); an array job brings every child's outputs")
    parser.add_argument("--to", metavar="DIR", type=Path,
                        help="where to put them (default: ./JOB); an array child's go under DIR/<sample>/")
    parser.add_argument("--list", action="store_true", help="list the outputs (size, sha256) without downloading")
    parser.add_argument("--report", action="store_true", help="also write the job's report (labbatch report) "
                        "as report.html beside the results")
    parser.add_argument("--labs-dir", type=Path, metavar="DIR", help="folder of lab files, for the report's prices "
                        "(default: the project's labs/)")


def run_results(args: argparse.Namespace) -> int:
    data = LabData.from_args(args)
    with data.api() as api:
        record = _follow_recovery(api, api.get(args.job_id))
    outputs, manifests, problems = job_outputs(data, record)
    if args.list:
        _print_outputs(record, outputs, problems, as_json=args.json)
        return _finish(problems, record)
    destination = args.to or Path(record["job_id"])
    written = download_outputs(data, outputs, manifests, destination)
    total = sum(o.size for o in outputs)
    if args.json:
        sys.stdout.write(json.dumps({"job_id": record["job_id"], "directory": str(destination), "files": [
            {"path": o.local_path, "size": o.size, "sha256": o.sha256, "uri": f"s3://{o.bucket}/{o.key}"}
            for o in outputs], "problems": [{"code": p.code, "message": p.message} for p in problems]},
            indent=2) + "\n")
    else:
        kept = sum(1 for w in written if w)
        print(f"{_files(len(outputs))} ({human_bytes(total)}) of {record['job_id']} in {destination}/, sizes and sha256 "
              f"verified against {outcome.MANIFEST_NAME}" + (f" ({len(outputs) - kept} already there)" if kept < len(outputs)
                                                   else ""))
    if args.report:
        from labbatch.report.command import DEFAULT_LABS_DIR, write_report

        page = destination / "report.html"
        with data.api() as api:
            write_report(api, output=page, labs_dir=args.labs_dir or DEFAULT_LABS_DIR, lab_name=args.lab,
                         job_ids=[args.job_id])
        print(f"Report: {page}", file=sys.stderr if args.json else sys.stdout)
    return _finish(problems, record)


def _follow_recovery(api: Any, record: dict[str, Any]) -> dict[str, Any]:
    seen = {record["job_id"]}
    while record.get("status") == "FAILED" and record.get("recovered_by") and record["recovered_by"] not in seen:
        print(f"labbatch: {record['job_id']} failed ({record.get('failure')}) and LabBatch resubmitted it as "
              f"{record['recovered_by']}: showing that job's outputs", file=sys.stderr)
        record = api.get(record["recovered_by"])
        seen.add(record["job_id"])
    return record


def _finish(problems: Sequence[LabBatchError], record: Mapping[str, Any]) -> int:
    if not problems:
        return 0
    for problem in problems[:-1]:
        print_error(problem.code, problem.message)
    raise problems[-1]


def job_outputs(data: LabData, record: Mapping[str, Any]) -> tuple[list[Output], dict[str | None, bytes],
                                                                    list[LabBatchError]]:
    """Every output the job's manifests list, the manifests themselves, and what is missing or failed.

    Refuses (raises) when there is nothing to fetch at all: a job not finished, or no manifest.
    """
    job_id, status = record["job_id"], record.get("status")
    if status not in FINAL_STATUSES:
        raise LabBatchError("job_not_finished", f"{job_id} is {status}: its outputs are uploaded when it ends "
                            f"(labbatch wait {job_id})")
    prefix = record["output_prefix"]
    s3 = data.client("s3")
    if record.get("array_size"):
        children = _samples(data, record)
        with ThreadPoolExecutor(max_workers=16) as pool:
            fetched = list(pool.map(
                lambda child: (child, _read_manifest(s3, outcome.manifest_key(f"{prefix}{child[1]}/"))), children))
    else:
        fetched = [((None, None), _read_manifest(s3, outcome.manifest_key(prefix)))]
    outputs: list[Output] = []
    manifests: dict[str | None, bytes] = {}
    problems: list[LabBatchError] = []
    for (index, sample), (uri, body, error) in fetched:
        who = job_id if sample is None else f"{job_id} child {index} ({sample})"
        if body is None:
            problems.append(LabBatchError("no_manifest", f"{who} has no {outcome.MANIFEST_NAME} at {uri} "
                                          f"({error}); status {status}: it may not have run yet"))
            continue
        try:
            manifest = json.loads(body)
        except ValueError:
            problems.append(LabBatchError("bad_manifest", f"{uri} is not JSON"))
            continue
        if manifest.get("status") != "succeeded":
            detail = (manifest.get("error") or {}).get("message") or f"phase {manifest.get('failed_phase')}"
            problems.append(LabBatchError("job_failed", f"{who} failed, so it has no outputs: {detail} "
                                          f"(labbatch logs {job_id}" + (f" --child {index}" if index is not None
                                                                        else "") + ")"))
            continue
        manifests[sample] = body
        for entry in manifest.get("outputs") or []:
            path = str(entry.get("path") or "")
            relative = PurePosixPath(path)
            if not path or relative.is_absolute() or ".." in relative.parts:
                problems.append(LabBatchError("bad_manifest", f"{uri} lists an unsafe path {path!r}"))
                continue
            bucket, key = split_uri(str(manifest.get("output_prefix") or ""))
            outputs.append(Output(sample, relative.as_posix(), bucket, entry.get("key") or key + path,
                                  int(entry["size"]), str(entry["sha256"])))
    if not outputs and not manifests and problems:
        if len(problems) == 1:
            raise problems[0]
        for problem in problems[:-1]:
            print_error(problem.code, problem.message)
        raise LabBatchError(problems[-1].code, f"{problems[-1].message} (no child of {job_id} has outputs)")
    return outputs, manifests, problems


def _samples(data: LabData, record: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, sample name) of every child: from the job's sample list, else a listing of its prefix."""
    s3 = data.client("s3")
    uri = record.get("samples_uri")
    if uri:
        bucket, key = split_uri(uri)
        try:
            samples = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            return [(index, str(sample["name"])) for index, sample in enumerate(samples)]
        except Exception as error:  # noqa: BLE001 - then the listing tells
            print(f"labbatch: cannot read the sample list {uri} ({aws_reason(error)}): listing the outputs instead",
                  file=sys.stderr)
    bucket, prefix = split_uri(record["output_prefix"])
    names: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return [(index, name) for index, name in enumerate(sorted(names))]


def _read_manifest(s3: Any, uri: str) -> tuple[str, bytes | None, str | None]:
    bucket, key = split_uri(uri)
    try:
        return uri, s3.get_object(Bucket=bucket, Key=key)["Body"].read(), None
    except Exception as error:  # noqa: BLE001 - botocore's errors alike
        return uri, None, "not found" if aws_code(error) in ("NoSuchKey", "404") else aws_reason(error)


def _print_outputs(record: Mapping[str, Any], outputs: Sequence[Output], problems: Sequence[LabBatchError], *,
                   as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"job_id": record["job_id"], "files": [
            {"path": o.local_path, "size": o.size, "sha256": o.sha256, "uri": f"s3://{o.bucket}/{o.key}"}
            for o in outputs]}, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("path", "size", "sha256", "uri", title=f"outputs of {record['job_id']}", title_justify="left")
    for output in outputs:
        table.add_row(output.local_path, f"{output.size:,}", output.sha256[:16] + "…", f"s3://{output.bucket}/{output.key}")
    Console(highlight=False).print(table)
    print(f"{_files(len(outputs))}, {human_bytes(sum(o.size for o in outputs))}")


def download_outputs(data: LabData, outputs: Sequence[Output], manifests: Mapping[str | None, bytes],
                     destination: Path) -> list[bool]:
    """Downloads and verifies every output; True for each one fetched, False for one already there intact."""
    from boto3.s3.transfer import TransferManager
    from botocore.exceptions import BotoCoreError, ClientError

    destination.mkdir(parents=True, exist_ok=True)
    for sample, body in manifests.items():
        folder = destination / sample if sample is not None else destination
        folder.mkdir(parents=True, exist_ok=True)
        (folder / outcome.MANIFEST_NAME).write_bytes(body)
    s3 = data.client("s3")
    fetched = [False] * len(outputs)
    pending = []
    for index, output in enumerate(outputs):
        target = destination / output.local_path
        if target.is_file() and target.stat().st_size == output.size and sha256_file(target) == output.sha256:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        pending.append(index)
    problems: list[LabBatchError] = []
    total = sum(outputs[i].size for i in pending)
    with Progress("download", total, len(pending)) as progress, TransferManager(s3, transfer_config()) as manager, \
            ThreadPoolExecutor(max_workers=4) as verifiers:
        for attempt in (1, 2):
            futures = {index: manager.download(outputs[index].bucket, outputs[index].key,
                                               str(destination / outputs[index].local_path) + PART_SUFFIX,
                                               subscribers=[progress.subscriber()])
                       for index in pending}
            checks = {}
            for index, future in futures.items():
                try:
                    future.result()
                except (ClientError, BotoCoreError, OSError) as error:
                    checks[index] = None
                    problems_for = LabBatchError("download_failed", f"{outputs[index].local_path}: "
                                                 f"s3://{outputs[index].bucket}/{outputs[index].key}: {aws_reason(error)}")
                    if attempt == 2:
                        problems.append(problems_for)
                    continue
                checks[index] = verifiers.submit(_verify_download, destination, outputs[index])
            retry = []
            for index, check in checks.items():
                problem = check.result() if check is not None else "download failed"
                if problem is None:
                    fetched[index] = True
                    progress.file_done()
                elif attempt == 1:
                    retry.append(index)
                    progress.bytes(-outputs[index].size)
                elif check is not None:
                    output = outputs[index]
                    (destination / (output.local_path + PART_SUFFIX)).unlink(missing_ok=True)
                    problems.append(LabBatchError(
                        "checksum_mismatch" if "sha256" in problem else "size_mismatch",
                        f"{output.local_path}: {problem} (s3://{output.bucket}/{output.key}, twice); "
                        "the download was removed"))
            if not retry:
                break
            pending = retry
    if problems:
        for problem in problems[:-1]:
            print_error(problem.code, problem.message)
        last = problems[-1]
        raise LabBatchError(last.code, last.message + (f" ({len(problems)} files failed)" if len(problems) > 1 else ""))
    return fetched


def _verify_download(destination: Path, output: Output) -> str | None:
    part = destination / (output.local_path + PART_SUFFIX)
    size = part.stat().st_size
    if size != output.size:
        return f"downloaded {size:,} bytes, the manifest says {output.size:,}"
    got = sha256_file(part)
    if got != output.sha256:
        return f"sha256 {got} does not match the manifest's {output.sha256}"
    os.replace(part, destination / output.local_path)
    return None
