"""Stage in (HEAD, free-space check, download, verify) and stage out (upload, verify)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checksums import Checksum, expected_checksum, file_checksum, sha256_hex
from .contract import JobContract
from .errors import ExitCode, RunnerError
from .runlog import RunnerLog
from .s3client import describe_client_error
from .s3uri import S3Uri
from .scratch import local_input_path
from .transfer import Transfer, TransferEngine, TransferFailed

# HEADs are small and latency-bound: many in flight hide the round trips.
_HEAD_THREADS = 32
# Hashing is CPU-bound and releases the GIL on large reads: one thread per core.
_HASH_THREADS = max(2, os.cpu_count() or 2)
_ARCHIVED = {"GLACIER", "DEEP_ARCHIVE"}
MANIFEST_NAME = "manifest.json"
LOGS_DIR = "logs/"


@dataclass(frozen=True)
class PlannedInput:
    uri: S3Uri
    path: Path
    used_as: tuple[str, ...]


@dataclass
class StagedInput:
    uri: S3Uri
    path: Path
    size: int
    checksum: Checksum | None
    used_as: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class StagedOutput:
    path: str  # relative to {output_dir}
    key: str
    size: int
    sha256: str


def plan_inputs(contract: JobContract, inputs_dir: Path) -> list[PlannedInput]:
    """Every object to stage, once each, with the local path placeholders will name."""
    used_as: dict[S3Uri, list[str]] = {}
    for uri in contract.inputs:
        used_as.setdefault(uri, []).append("inputs")
    for name, uri in contract.staged_parameters.items():
        used_as.setdefault(uri, []).append(f"parameter:{name}")
    planned, owners = [], {}
    for uri, roles in used_as.items():
        try:
            path = local_input_path(inputs_dir, uri)
        except ValueError as exc:
            raise RunnerError(ExitCode.CONTRACT, f"input {exc}") from None
        if path in owners:
            raise RunnerError(ExitCode.CONTRACT, f"inputs {owners[path]} and {uri} would be staged to the same path")
        owners[path] = uri
        planned.append(PlannedInput(uri, path, tuple(roles)))
    return planned


def _head(s3: Any, uri: S3Uri) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = s3.head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED")
    except ClientError as exc:
        reason = describe_client_error(exc)
        code = ExitCode.INPUT_UNAVAILABLE if reason.endswith(("(404)", "(403)")) else ExitCode.STAGE_IN_FAILED
        raise RunnerError(code, f"input {uri}: {reason}") from None
    except BotoCoreError as exc:
        raise RunnerError(ExitCode.STAGE_IN_FAILED, f"input {uri}: {exc}") from None
    if head.get("StorageClass") in _ARCHIVED and 'ongoing-request="false"' not in (head.get("Restore") or ""):
        raise RunnerError(ExitCode.INPUT_UNAVAILABLE, f"input {uri}: in {head['StorageClass']} and not restored")
    return head


def _head_all(s3: Any, planned: list[PlannedInput], log: RunnerLog) -> list[dict[str, Any]]:
    def head_or_error(item: PlannedInput) -> dict[str, Any] | RunnerError:
        try:
            return _head(s3, item.uri)
        except RunnerError as exc:
            return exc

    with ThreadPoolExecutor(min(_HEAD_THREADS, max(1, len(planned)))) as pool:
        heads = list(pool.map(head_or_error, planned))
    errors = [head for head in heads if isinstance(head, RunnerError)]
    if errors:
        for error in errors:
            log.error(error.message)
        first = errors[0]
        more = f" (and {len(errors) - 1} more inputs unavailable)" if len(errors) > 1 else ""
        raise RunnerError(first.code, first.message + more)
    return heads  # type: ignore[return-value]


def _mismatch(item: PlannedInput, size: int, expected: Checksum | None) -> str | None:
    """What is wrong with a downloaded file, or None when it is what S3 said it would be."""
    try:
        local_size = item.path.stat().st_size
    except FileNotFoundError:
        return f"input {item.uri}: missing after download"
    if local_size != size:
        return f"input {item.uri}: size mismatch (expected {size} bytes, got {local_size})"
    if expected is not None:
        actual = file_checksum(item.path, expected.algorithm)
        if actual != expected.value:
            return f"input {item.uri}: checksum mismatch ({expected.algorithm}: expected {expected.value}, got {actual})"
    return None


def stage_in(
    s3: Any,
    engine: TransferEngine,
    planned: list[PlannedInput],
    scratch_dir: Path,
    *,
    free_bytes: Callable[[Path], int],
    log: RunnerLog,
) -> list[StagedInput]:
    if not planned:
        return []
    heads = _head_all(s3, planned, log)
    sizes = [int(head["ContentLength"]) for head in heads]
    expected = [expected_checksum(head) for head in heads]
    needed, free = sum(sizes), free_bytes(scratch_dir)
    if needed > free:
        raise RunnerError(
            ExitCode.NO_SCRATCH_SPACE,
            f"not enough scratch space on {scratch_dir}: inputs need {needed:,} bytes, {free:,} bytes free",
        )
    log.info(f"stage_in: {len(planned)} objects, {needed:,} bytes, {free:,} bytes free on {scratch_dir}")

    pending = list(range(len(planned)))
    # A second download of whatever failed to verify rides out a corrupted transfer; an object
    # that changed since its HEAD, or is corrupt at rest, fails the same way twice.
    for attempt in (1, 2):
        transfers = [Transfer(str(planned[i].uri), str(planned[i].path), sizes[i]) for i in pending]
        try:
            engine.download(transfers)
        except TransferFailed as exc:
            _raise_transfer_failure("input", "download", exc, (t.source for t in transfers), log)
        with ThreadPoolExecutor(_HASH_THREADS) as pool:
            problems = list(pool.map(lambda i: _mismatch(planned[i], sizes[i], expected[i]), pending))
        failed = [(i, problem) for i, problem in zip(pending, problems) if problem]
        if not failed:
            break
        for _, problem in failed:
            log.error(problem + (", downloading again" if attempt == 1 else ""))
        pending = [i for i, _ in failed]
    else:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise RunnerError(ExitCode.CHECKSUM_MISMATCH, failed[0][1] + more)
    return [
        StagedInput(item.uri, item.path, size, checksum, item.used_as)
        for item, size, checksum in zip(planned, sizes, expected)
    ]


def _raise_transfer_failure(kind: str, verb: str, exc: TransferFailed, order: Any, log: RunnerLog) -> None:
    messages = {(t.source if kind == "input" else t.destination): message for t, message in exc.failures.items()}
    named = [f"{kind} {name}: {verb} failed: {messages[name]}" for name in order if name in messages]
    if not named:
        named = [f"{kind} {name}: {verb} failed: {message}" for name, message in messages.items()]
    for line in named:
        log.error(line)
    more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
    code = ExitCode.STAGE_IN_FAILED if kind == "input" else ExitCode.STAGE_OUT_FAILED
    raise RunnerError(code, named[0] + more) from None


def _collect_outputs(outputs_dir: Path, log: RunnerLog) -> list[str]:
    relative_paths = []
    for directory, subdirectories, files in os.walk(outputs_dir):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory, name)
            relative = path.relative_to(outputs_dir).as_posix()
            # A link could point anywhere on the host (or back into inputs/): only files the
            # tool really wrote are results.
            if path.is_symlink() or not path.is_file():
                log.info(f"stage_out: skipping {relative}: not a regular file")
                continue
            relative_paths.append(relative)
    for relative in relative_paths:
        if relative == MANIFEST_NAME or relative.startswith(LOGS_DIR):
            raise RunnerError(
                ExitCode.STAGE_OUT_FAILED,
                f"output {relative}: the name is reserved for the runner ({MANIFEST_NAME}, {LOGS_DIR})",
            )
    return relative_paths


def stage_out(s3: Any, engine: TransferEngine, outputs_dir: Path, prefix: S3Uri, *, log: RunnerLog) -> list[StagedOutput]:
    relative_paths = _collect_outputs(outputs_dir, log)
    if not relative_paths:
        log.info("stage_out: the tool wrote no outputs")
        return []
    transfers = [Transfer(str(outputs_dir / relative), str(prefix.join(relative))) for relative in relative_paths]
    # Hash while the engine uploads: the files are read twice, but from the page cache.
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        digests = pool.map(lambda t: sha256_hex(Path(t.source)), transfers)
        try:
            engine.upload(transfers)
        except TransferFailed as exc:
            _raise_transfer_failure("output", "upload", exc, (t.destination for t in transfers), log)
        outputs = [
            StagedOutput(relative, prefix.join(relative).key, (outputs_dir / relative).stat().st_size, digest)
            for relative, digest in zip(relative_paths, digests)
        ]
    _verify_uploaded(s3, prefix, outputs)
    log.info(f"stage_out: {len(outputs)} files, {sum(o.size for o in outputs):,} bytes to {prefix}")
    return outputs


def _verify_uploaded(s3: Any, prefix: S3Uri, outputs: list[StagedOutput]) -> None:
    """One listing of the prefix proves every output landed whole (a LIST per 1,000 keys)."""
    from botocore.exceptions import BotoCoreError, ClientError

    landed: dict[str, int] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key):
            landed.update((item["Key"], item["Size"]) for item in page.get("Contents", []))
    except (BotoCoreError, ClientError) as exc:
        raise RunnerError(ExitCode.STAGE_OUT_FAILED, f"output prefix {prefix}: listing to verify uploads failed: {exc}") from None
    for output in outputs:
        if landed.get(output.key) != output.size:
            raise RunnerError(
                ExitCode.STAGE_OUT_FAILED,
                f"output s3://{prefix.bucket}/{output.key}: expected {output.size} bytes in S3, found {landed.get(output.key, 'nothing')}",
            )
