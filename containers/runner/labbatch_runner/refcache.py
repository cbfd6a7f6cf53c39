"""The instance's reference cache: each reference object downloaded once per instance.

A STAR index is about 30 GB; an array of 400 samples landing on a handful of instances must not
pull it 400 times. A job's reference data (what its parameters and shared inputs name, with
their folders and companions) is kept on the scratch volume, in `<scratch>/labbatch-cache/`,
shared by every job that lands on the instance, and reaches the job's usual input paths as
symbolic links into it.

- An entry is one object version: keyed by bucket, key and ETag, so a changed object is a new
  entry and is fetched again; the old one is evicted in its turn.
- Each entry has a lock file. A job holds it shared for as long as its attempt lives (the
  tool reads through the links); it takes it exclusively only to download a missing entry, so a
  second job wanting the same object waits on the lock and then finds it there: one download.
  Locks are `flock`s, so a killed runner releases its own.
- Entries are downloaded like any input (sized, verified against S3's checksums) into a part
  file, renamed into place only whole, and made read-only (mode 0444). A tool running as root
  could still write to one, so every use checks its size and modification time against what
  was recorded when it was fetched, and fetches it again if either changed.
- Eviction is least recently used first, and only when a job needs the space: an entry whose
  lock anyone holds (a running job uses it, or it is being downloaded) is never evicted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from labbatch_contract.references import CACHE_DIR_NAME
from labbatch_contract.outcome import ExitCode

from .checksums import Checksum
from .errors import RunnerError
from .runlog import RunnerLog
from .s3uri import S3Uri
from .scratch import lock_if_unheld

PART_SUFFIX = ".part"


def meta_path(root: Path) -> Path:
    """`<id>.json` beside the entry's directory; its mtime is the entry's last use."""
    return root.with_name(root.name + ".json")


def _shared_dir(path: Path) -> None:
    """Made writable by every user: jobs on one instance run their images' own users, and any of
    them may fetch into, use or evict an entry another made."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        path.chmod(0o777)
    except PermissionError:
        pass  # another user's: they made it so already


def cache_dir(scratch_dir: Path) -> Path:
    return scratch_dir / CACHE_DIR_NAME


def entry_id(uri: S3Uri, etag: str | None) -> str:
    return hashlib.sha256(f"{uri.bucket}\n{uri.key}\n{etag or ''}".encode()).hexdigest()[:40]


@dataclass
class Entry:
    """One object version in the cache, with the lock this attempt holds on it."""

    uri: S3Uri
    etag: str | None
    size: int
    root: Path  # <cache>/<id[:2]>/<id>/: the object's file alone, so no object name can collide with ours
    lock_path: Path  # <cache>/<id[:2]>/<id>.lock
    fd: int | None = None
    hit: bool = False

    @property
    def data(self) -> Path:
        # The object's own base name, so a tool that resolves the link still sees its extension.
        return self.root / (self.uri.key.rstrip("/").rpartition("/")[2] or "object")

    @property
    def part(self) -> Path:
        return self.data.with_name(self.data.name + PART_SUFFIX)

    @property
    def meta(self) -> Path:
        return meta_path(self.root)

    def valid(self) -> bool:
        try:
            meta = json.loads(self.meta.read_text())
            stat = self.data.stat()
        except (OSError, ValueError):
            return False
        return (meta.get("uri") == str(self.uri) and meta.get("etag") == self.etag and meta.get("size") == self.size
                and stat.st_size == self.size and stat.st_mtime_ns == meta.get("mtime_ns"))


def _lock_file(path: Path, operation: int) -> int:
    """An open, locked lock file; retried when the file was replaced while we waited (an evictor
    removes an entry's lock file with the entry, and a waiter must not keep a lock on the old one)."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            try:
                os.fchmod(fd, 0o666)  # whatever the umask, another user's job must be able to lock it
            except PermissionError:
                pass
            fcntl.flock(fd, operation)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


class ReferenceCache:
    def __init__(self, root: Path, log: RunnerLog) -> None:
        self.root = root
        self.log = log
        self.held: list[Entry] = []

    def entry(self, uri: S3Uri, etag: str | None, size: int) -> Entry:
        identity = entry_id(uri, etag)
        shard = self.root / identity[:2]
        return Entry(uri, etag, size, shard / identity, shard / f"{identity}.lock")

    def acquire(self, entries: list[Entry]) -> list[Entry]:
        """Locks every entry: shared where it is in the cache already (a hit), exclusive where this
        attempt must download it. Returns the misses. In one order (by lock path), so two jobs that
        want overlapping sets never wait on each other in a circle."""
        misses = []
        self.held.extend(entries)
        try:
            for entry in sorted(entries, key=lambda e: str(e.lock_path)):
                _shared_dir(entry.lock_path.parent)
                if self._take(entry):
                    misses.append(entry)
        except BaseException:
            self.release(entries)
            raise
        return misses

    def _take(self, entry: Entry) -> bool:
        """True when the entry is missing and now held exclusively for its download."""
        entry.fd = _lock_file(entry.lock_path, fcntl.LOCK_SH)
        if entry.valid():
            entry.hit = True
            os.utime(entry.meta)  # least recently used is by the meta file's time
            return False
        os.close(entry.fd)
        # Waits while another job downloads it (or, rarely, uses a damaged copy of it).
        entry.fd = _lock_file(entry.lock_path, fcntl.LOCK_EX)
        if entry.valid():
            # Downloaded while we waited. Holding it exclusively would block other jobs, and
            # flock's conversion is not atomic, so: release, then take it shared once more.
            os.close(entry.fd)
            return self._take(entry)
        _remove_entry_files(entry.root)
        _shared_dir(entry.root)
        return True

    def commit(self, entry: Entry, checksum: Checksum | None) -> None:
        """A verified download in the part file becomes the entry; this attempt keeps a shared lock."""
        entry.part.chmod(0o444)
        os.replace(entry.part, entry.data)
        stat = entry.data.stat()
        meta = {"uri": str(entry.uri), "etag": entry.etag, "size": entry.size, "mtime_ns": stat.st_mtime_ns,
                "checksum": asdict(checksum) if checksum else None, "fetched_at": time.time()}
        tmp = entry.meta.with_name(entry.meta.name + PART_SUFFIX)
        tmp.write_text(json.dumps(meta))
        tmp.chmod(0o666)  # any user's job records its use of the entry on it (os.utime)
        os.replace(tmp, entry.meta)
        # Exclusive to shared: not atomic, but nobody evicts what it cannot lock without
        # waiting, and the newest entry is the last one an evictor would choose; checked anyway.
        fcntl.flock(entry.fd, fcntl.LOCK_SH)
        if not entry.valid():
            raise RunnerError(ExitCode.STAGE_IN_FAILED, f"input {entry.uri}: the reference cache lost it while "
                                                         "it was being stored (evicted); run the job again")

    def release(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if entry.fd is not None:
                os.close(entry.fd)
                entry.fd = None

    def release_all(self) -> None:
        """The attempt is over: its links are gone, so the entries may be evicted."""
        self.release(self.held)
        self.held = []

    def recorded_checksum(self, entry: Entry) -> Checksum | None:
        """What a hit was verified against when it was fetched (its size and mtime are checked on
        each use)."""
        try:
            recorded = json.loads(entry.meta.read_text()).get("checksum")
        except (OSError, ValueError):
            return None
        return Checksum(recorded["algorithm"], recorded["value"]) if recorded else None

    def discard_partial(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            try:
                entry.part.unlink()
            except FileNotFoundError:
                pass

    def make_room(self, wanted: int, free_bytes: Callable[[Path], int], keep: set[Path]) -> int:
        """Evicts least recently used entries nobody holds until `wanted` bytes are free (or no
        more can go); returns the bytes free after."""
        free = free_bytes(self.root)
        if free >= wanted:
            return free
        for _, lock_path, root in self._by_last_use():
            if free >= wanted:
                break
            if lock_path in keep:
                continue
            # Unheld: no running job uses it and none is downloading it.
            fd = lock_if_unheld(lock_path)
            if fd is None:
                continue
            try:
                size = _tree_size(root)
                _remove_entry_files(root)
                meta_path(root).unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)
                self.log.info(f"reference cache: evicted {root.name} ({size:,} bytes) to make room")
            finally:
                os.close(fd)
            free = free_bytes(self.root)
        return free

    def _by_last_use(self) -> list[tuple[float, Path, Path]]:
        found = []
        for lock_path in self.root.glob("*/*.lock"):
            root = lock_path.with_suffix("")
            try:
                used = meta_path(root).stat().st_mtime
            except OSError:
                used = 0.0  # never completed: the first to go
            found.append((used, lock_path, root))
        return sorted(found)


def _tree_size(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def _remove_entry_files(root: Path) -> None:
    if not root.exists():
        return
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
