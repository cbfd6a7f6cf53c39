"""Stage in (size, free-space check, download, verify) and stage out (upload, verify)."""

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
from . import sizing, smallget
from .s3uri import S3Uri
from .scratch import local_input_path
from .transfer import Transfer, TransferEngine, TransferFailed

# Hashing is CPU-bound and releases the GIL on large reads: one thread per core.
_HASH_THREADS = max(2, os.cpu_count() or 2)
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
    engine: str = ""  # "get" or the bulk engine's name; for logs and the bench, not the manifest


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
    for uri in contract.shared_inputs:
        used_as.setdefault(uri, []).append("shared_inputs")
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


def _problem(uri: S3Uri, size: int, local_size: int, expected: Checksum | None, actual: str | None) -> str | None:
    """What is wrong with a downloaded file, or None when it is what S3 said it would be."""
    if local_size != size:
        return f"input {uri}: size mismatch (expected {size} bytes, got {local_size})"
    if expected is not None and actual != expected.value:
        return f"input {uri}: checksum mismatch ({expected.algorithm}: expected {expected.value}, got {actual})"
    return None


def _check_file(item: PlannedInput, size: int, expected: Checksum | None) -> str | None:
    try:
        local_size = item.path.stat().st_size
    except FileNotFoundError:
        return f"input {item.uri}: missing after download"
    actual = file_checksum(item.path, expected.algorithm) if expected is not None and local_size == size else None
    return _problem(item.uri, size, local_size, expected, actual)


class _Outcome:
    """One attempt's result for each pending input: a problem to retry, or a failure to stop on."""

    def __init__(self) -> None:
        self.problems: dict[int, str] = {}
        self.failures: dict[int, str] = {}


def stage_in(
    s3: Any,
    engine: TransferEngine,
    planned: list[PlannedInput],
    scratch_dir: Path,
    *,
    free_bytes: Callable[[Path], int],
    log: RunnerLog,
    small_object_bytes: int = smallget.SMALL_OBJECT_BYTES,
) -> list[StagedInput]:
    """Objects below `small_object_bytes` are fetched with one GET each, the rest by `engine`."""
    if not planned:
        return []
    sized = sizing.size_inputs(s3, [item.uri for item in planned], head_at_or_above=small_object_bytes, log=log)
    sizes = [item.size for item in sized]
    needed, free = sum(sizes), free_bytes(scratch_dir)
    if needed > free:
        raise RunnerError(
            ExitCode.NO_SCRATCH_SPACE,
            f"not enough scratch space on {scratch_dir}: inputs need {needed:,} bytes, {free:,} bytes free",
        )
    small = {i for i, size in enumerate(sizes) if size < small_object_bytes}
    # Small objects are verified against their GET; the others against their HEAD.
    expected: list[Checksum | None] = [
        None if i in small else expected_checksum(item.head or {}) for i, item in enumerate(sized)
    ]
    log.info(
        f"stage_in: {len(planned)} objects, {needed:,} bytes, {free:,} bytes free on {scratch_dir}; "
        f"{len(small)} by GET, {len(planned) - len(small)} by {engine.name}"
    )

    pending = list(range(len(planned)))
    # A second download of whatever failed to verify rides out a corrupted transfer; an object
    # that changed since it was sized, or is corrupt at rest, fails the same way twice.
    for attempt in (1, 2):
        outcome = _download(s3, engine, planned, sizes, expected, pending, small)
        if outcome.failures:
            named = [outcome.failures[i] for i in sorted(outcome.failures)]
            for line in named:
                log.error(line)
            more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
            raise RunnerError(ExitCode.STAGE_IN_FAILED, named[0] + more)
        failed = sorted(outcome.problems.items())
        if not failed:
            break
        for _, problem in failed:
            log.error(problem + (", downloading again" if attempt == 1 else ""))
        pending = [i for i, _ in failed]
    else:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise RunnerError(ExitCode.CHECKSUM_MISMATCH, failed[0][1] + more)
    return [
        StagedInput(item.uri, item.path, size, checksum, item.used_as, "get" if i in small else engine.name)
        for i, (item, size, checksum) in enumerate(zip(planned, sizes, expected))
    ]


def _download(
    s3: Any,
    engine: TransferEngine,
    planned: list[PlannedInput],
    sizes: list[int],
    expected: list[Checksum | None],
    pending: list[int],
    small: set[int],
) -> _Outcome:
    """Small GETs on a pool while the engine moves the rest from this (the main) thread, which
    is where SIGTERM lands: the engine's transfer is stopped, and GETs not yet started are dropped."""
    outcome = _Outcome()
    by_get = [i for i in pending if i in small]
    by_engine = [i for i in pending if i not in small]
    pool = ThreadPoolExecutor(max(1, min(smallget.GET_THREADS, len(by_get))))
    try:
        gets = {i: pool.submit(smallget.get_to_file, s3, planned[i].uri, planned[i].path) for i in by_get}
        if by_engine:
            transfers = [Transfer(str(planned[i].uri), str(planned[i].path), sizes[i]) for i in by_engine]
            try:
                engine.download(transfers)
            except TransferFailed as exc:
                mine = {str(planned[i].uri): i for i in by_engine}
                named = {mine[t.source]: message for t, message in exc.failures.items() if t.source in mine}
                if not named:  # an unattributed failure must not pass for a success: it is everyone's
                    named = dict.fromkeys(by_engine, next(iter(exc.failures.values()), "failed"))
                outcome.failures.update((i, f"input {planned[i].uri}: download failed: {m}") for i, m in named.items())
            else:
                with ThreadPoolExecutor(_HASH_THREADS) as hashers:
                    checks = hashers.map(lambda i: _check_file(planned[i], sizes[i], expected[i]), by_engine)
                    outcome.problems.update((i, problem) for i, problem in zip(by_engine, checks) if problem)
        for i, future in gets.items():
            try:
                got = future.result()
            except smallget.GetFailed as exc:
                outcome.failures[i] = f"input {planned[i].uri}: download failed: {exc}"
                continue
            expected[i] = got.expected
            problem = _problem(planned[i].uri, sizes[i], got.size, got.expected, got.actual)
            if problem:
                outcome.problems[i] = problem
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcome


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
