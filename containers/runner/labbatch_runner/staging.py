"""Stage in (size, free-space check, download, verify) and stage out (upload, verify)."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from labbatch_contract import references
from labbatch_contract.outcome import RESERVED_OUTPUTS, ExitCode

from .checksums import Checksum, expected_checksum, file_checksum, sha256_hex
from .contract import JobContract
from .errors import RunnerError
from .runlog import RunnerLog
from . import sizing, smallget
from .s3uri import S3Uri
from .refcache import Entry, ReferenceCache
from .s3client import describe_client_error
from .scratch import local_input_path
from .transfer import Transfer, TransferEngine, TransferFailed

# Hashing is CPU-bound and releases the GIL on large reads: one thread per core.
_HASH_THREADS = max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class PlannedInput:
    uri: S3Uri
    path: Path
    used_as: tuple[str, ...]
    folder: bool = False  # s3://bucket/prefix/: every object under it, into the directory `path`
    # A parameter's or shared input's data (and its companions): staged through the instance's
    # reference cache when there is one.
    reference: bool = False
    required: bool = True  # False for an optional companion, which is staged only if it exists
    etag: str | None = None  # the version a download must get (a reference cache entry's)


@dataclass
class StagedInput:
    uri: S3Uri
    path: Path
    size: int
    checksum: Checksum | None
    used_as: tuple[str, ...] = field(default_factory=tuple)
    engine: str = ""  # "get" or the bulk engine's name; for logs and the bench, not the manifest
    cache: str | None = None  # "hit" or "miss" for reference data; None for a job's own inputs


@dataclass(frozen=True)
class StagedOutput:
    path: str  # relative to {output_dir}
    key: str
    size: int
    sha256: str


def plan_inputs(contract: JobContract, inputs_dir: Path) -> list[PlannedInput]:
    """Every value to stage, once each, with the local path placeholders will name (a folder's
    directory), and the companions that travel beside each file."""
    used_as: dict[S3Uri, list[str]] = {}
    patterns: dict[S3Uri, list[str]] = {}
    own: set[S3Uri] = set()
    for uri in contract.inputs:
        used_as.setdefault(uri, []).append("inputs")
        patterns.setdefault(uri, []).extend(contract.secondary_files.get(references.INPUTS_KEY, []))
        own.add(uri)
    for uri in contract.shared_inputs:
        used_as.setdefault(uri, []).append("shared_inputs")
        patterns.setdefault(uri, []).extend(contract.secondary_files.get(references.SHARED_INPUTS_KEY, []))
    for name, uri in contract.staged_parameters.items():
        used_as.setdefault(uri, []).append(f"parameter:{name}")
        patterns.setdefault(uri, []).extend(contract.secondary_files.get(references.parameter_key(name), []))
    # Companions, merged over every value they travel with: required if any pattern requires one,
    # a job's own input if the file it travels with is one (then it is not reference data).
    companions: dict[S3Uri, tuple[list[str], bool, bool]] = {}
    for uri, texts in patterns.items():
        if texts and uri.key.endswith("/"):
            raise RunnerError(ExitCode.CONTRACT, f"input {uri} is a folder; companions ({', '.join(texts)}) "
                                                 "are for files")
        for text in dict.fromkeys(texts):
            pattern = references.parse_pattern(text)
            companion = S3Uri(uri.bucket, references.companion_key(uri.key, pattern))
            if companion == uri or companion in used_as:
                continue
            roles, required, of_own = companions.get(companion, ([], False, False))
            roles += [f"companion {text} of {role}" for role in used_as[uri]]
            companions[companion] = (roles, required or pattern.required, of_own or uri in own)
    planned, owners = [], {}

    def add(uri: S3Uri, roles: tuple[str, ...], *, reference: bool, required: bool = True) -> None:
        try:
            path = local_input_path(inputs_dir, uri)
        except ValueError as exc:
            raise RunnerError(ExitCode.CONTRACT, f"input {exc}") from None
        if path in owners:
            raise RunnerError(ExitCode.CONTRACT, f"inputs {owners[path]} and {uri} would be staged to the same path")
        owners[path] = uri
        planned.append(PlannedInput(uri, path, roles, folder=uri.key.endswith("/"), reference=reference,
                                    required=required))

    for uri, roles in used_as.items():
        add(uri, tuple(roles), reference=uri not in own)
    for uri, (roles, required, of_own) in companions.items():
        add(uri, tuple(roles), reference=not of_own, required=required)
    return planned


def resolve_objects(s3: Any, planned: list[PlannedInput], log: RunnerLog) -> list[PlannedInput]:
    """The objects behind the plan: a folder's by listing it, an optional companion's only if it
    exists. A folder with no objects fails like a missing input (65)."""
    from botocore.exceptions import BotoCoreError, ClientError

    objects: dict[S3Uri, PlannedInput] = {}
    for item in planned:
        if item.folder:
            found = 0
            try:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=item.uri.bucket, Prefix=item.uri.key):
                    for listed in page.get("Contents", []):
                        relative = listed["Key"][len(item.uri.key):]
                        if not relative or relative.endswith("/"):
                            continue  # a folder marker, not a file
                        uri = S3Uri(item.uri.bucket, listed["Key"])
                        if not references.stageable_key(relative):
                            raise RunnerError(ExitCode.CONTRACT, f"input {uri}: key has empty, '.' or '..' "
                                                                 "segments and cannot be staged safely")
                        path = item.path.joinpath(*relative.split("/"))  # the folder's layout, below its directory
                        found += 1
                        known = objects.get(uri)
                        objects[uri] = PlannedInput(uri, path, item.used_as, reference=item.reference and
                                                    (known is None or known.reference))
            except (ClientError, BotoCoreError) as exc:
                raise sizing.input_error(item.uri, exc, "listing the folder failed: ") from None
            if not found:
                raise RunnerError(ExitCode.INPUT_UNAVAILABLE, f"input {item.uri}: no objects under this folder")
            log.info(f"stage_in: folder {item.uri}: {found} objects into {item.path}")
        elif not item.required:
            try:
                s3.head_object(Bucket=item.uri.bucket, Key=item.uri.key)
            except (ClientError, BotoCoreError) as exc:  # anything but a 404: sizing HEADs it again and says what
                if isinstance(exc, ClientError) and describe_client_error(exc).endswith("(404)"):
                    log.info(f"stage_in: optional {item.used_as[0]}: {item.uri} does not exist, not staged")
                    continue
            objects.setdefault(item.uri, item)
        else:
            objects.setdefault(item.uri, item)
    _no_file_inside_another(objects.values())
    return list(objects.values())


def _no_file_inside_another(objects: Any) -> None:
    """`a/b` and `a/b/c` cannot both be staged: one name would have to be a file and a folder."""
    by_path = {item.path: item for item in objects}
    for item in by_path.values():
        for parent in item.path.parents:
            if parent in by_path:
                raise RunnerError(ExitCode.CONTRACT, f"inputs {by_path[parent].uri} and {item.uri}: the first would "
                                                     "have to be both a file and the folder holding the second")


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
    cache: ReferenceCache | None = None,
    disk_factor: float = 1.0,
) -> list[StagedInput]:
    """Objects below `small_object_bytes` are fetched with one GET each, the rest by `engine`.

    With a `cache`, reference data goes through it: what it holds is linked, what it lacks is
    downloaded into it (once, however many jobs want it at the same time) and then linked. The
    cache keeps this attempt's locks until `cache.release_all()`; the caller ends the attempt.
    Unused cache entries give way not only to the downloads but to the room the tool will need
    (its own inputs x `disk_factor`, what admission reserved for it).
    """
    if not planned:
        return []
    objects = resolve_objects(s3, planned, log)
    sized = sizing.size_inputs(s3, [item.uri for item in objects], head_at_or_above=small_object_bytes, log=log)
    sizes = [item.size for item in sized]
    cached = {i for i, item in enumerate(objects) if cache is not None and item.reference}
    entries: dict[int, Entry] = {}
    misses: dict[int, Entry] = {}
    if cached:
        assert cache is not None
        entries = {i: cache.entry(objects[i].uri, sized[i].etag, sizes[i]) for i in cached}
        cache.acquire(list(entries.values()))
        misses = {i: entry for i, entry in entries.items() if not entry.hit}
    try:
        # What this attempt downloads: its own inputs into its directory, missing references into the cache.
        fetch = [i for i in range(len(objects)) if i not in cached or i in misses]
        targets = [objects[i] if i not in misses else
                   PlannedInput(objects[i].uri, misses[i].part, objects[i].used_as, etag=misses[i].etag) for i in fetch]
        needed = sum(sizes[i] for i in fetch)
        working = math.ceil(sum(sizes[i] for i in range(len(objects)) if i not in cached) * max(disk_factor - 1, 0))
        free = free_bytes(scratch_dir)
        if needed + working > free and cache is not None:
            free = cache.make_room(needed + working, lambda _: free_bytes(scratch_dir),
                                   keep={e.lock_path for e in entries.values()})
        if needed > free:
            raise RunnerError(
                ExitCode.NO_SCRATCH_SPACE,
                f"not enough scratch space on {scratch_dir}: inputs need {needed:,} bytes, {free:,} bytes free",
            )
        fetch_sizes = [sizes[i] for i in fetch]
        small = {n for n, size in enumerate(fetch_sizes) if size < small_object_bytes}
        # Small objects are verified against their GET; the others against their HEAD.
        expected: list[Checksum | None] = [
            None if n in small else expected_checksum(sized[i].head or {}) for n, i in enumerate(fetch)
        ]
        hits = len(cached) - len(misses)
        log.info(
            f"stage_in: {len(objects)} objects, {needed:,} bytes to download, {free:,} bytes free on {scratch_dir}; "
            f"{len(small)} by GET, {len(fetch) - len(small)} by {engine.name}"
            + (f"; reference cache: {hits} held already, {len(misses)} downloaded into it" if cached else "")
        )
        _fetch(s3, engine, targets, fetch_sizes, expected, small, log)
        position = {i: n for n, i in enumerate(fetch)}
        for i, entry in misses.items():
            cache.commit(entry, expected[position[i]])  # type: ignore[union-attr]
    except BaseException:
        if cache is not None:
            cache.discard_partial(misses.values())
            cache.release(misses.values())  # whoever waits for these may download them now
        raise
    for i, entry in entries.items():
        objects[i].path.parent.mkdir(parents=True, exist_ok=True)
        objects[i].path.symlink_to(entry.data)
    checksums = dict(zip(fetch, expected))
    return [
        StagedInput(item.uri, item.path, sizes[i],
                    checksums.get(i) if i not in entries or i in misses else cache.recorded_checksum(entries[i]),
                    item.used_as,
                    "cache" if i in entries and i not in misses else
                    ("get" if sizes[i] < small_object_bytes else engine.name),
                    None if i not in entries else ("miss" if i in misses else "hit"))
        for i, item in enumerate(objects)
    ]


def _fetch(
    s3: Any,
    engine: TransferEngine,
    planned: list[PlannedInput],
    sizes: list[int],
    expected: list[Checksum | None],
    small: set[int],
    log: RunnerLog,
) -> None:
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
            return
        for _, problem in failed:
            log.error(problem + (", downloading again" if attempt == 1 else ""))
        pending = [i for i, _ in failed]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    raise RunnerError(ExitCode.CHECKSUM_MISMATCH, failed[0][1] + more)


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
        gets = {i: pool.submit(smallget.get_to_file, s3, planned[i].uri, planned[i].path, planned[i].etag)
                for i in by_get}
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
        if relative in RESERVED_OUTPUTS:
            raise RunnerError(
                ExitCode.STAGE_OUT_FAILED,
                f"output {relative}: the name is reserved for the runner ({', '.join(RESERVED_OUTPUTS)})",
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
