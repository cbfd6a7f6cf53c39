"""The per-attempt directory on the scratch volume: layout, free space, usage, removal."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .s3uri import S3Uri

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
LOCK_NAME = ".lock"


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def tree_bytes(root: Path) -> int:
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed while we looked: the tool owns its directories
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _segment(text: str) -> str:
    cleaned = _UNSAFE.sub("_", text)[:128]
    return "_" if cleaned in ("", ".", "..") else cleaned


def local_input_path(inputs_dir: Path, uri: S3Uri) -> Path:
    """`inputs/<bucket>/<key>`: keeps the file name tools look at (.fq.gz) and cannot collide.

    Raises ValueError for keys whose `.`/`..` segments would step outside `inputs/`.
    """
    segments = [segment for segment in uri.key.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise ValueError(f"{uri}: key has '.' or '..' segments and cannot be staged safely")
    return inputs_dir.joinpath(uri.bucket, *segments)


@dataclass
class AttemptDir:
    """`<scratch>/labbatch/<job>[-<index>]/attempt-<n>-<random>/`.

    The random part keeps a retry on the same instance clear of a killed attempt's leftovers,
    and the held lock on `.lock` tells `sweep_stale_attempts` that this one is alive.
    """

    root: Path
    _lock_fd: int | None = None

    @classmethod
    def create(cls, scratch_dir: Path, job_id: str, array_index: int | None, attempt: int | None) -> "AttemptDir":
        job_name = _segment(job_id) + ("" if array_index is None else f"-{array_index}")
        attempt_name = f"attempt-{attempt if attempt is not None else 'x'}-{secrets.token_hex(4)}"
        root = scratch_dir / "labbatch" / job_name / attempt_name
        root.mkdir(parents=True)
        attempt_dir = cls(root)
        attempt_dir._lock_fd = os.open(root / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(attempt_dir._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for sub in (attempt_dir.inputs, attempt_dir.outputs, attempt_dir.work, attempt_dir.tmp, attempt_dir.logs):
            sub.mkdir()
        return attempt_dir

    inputs = property(lambda self: self.root / "inputs")
    outputs = property(lambda self: self.root / "outputs")
    work = property(lambda self: self.root / "work")
    tmp = property(lambda self: self.root / "tmp")
    logs = property(lambda self: self.root / "logs")

    def remove(self) -> None:
        _remove_tree(self.root)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        # Leave no empty job directory behind either; another attempt of it may still be in it.
        for parent in (self.root.parent, self.root.parent.parent):
            try:
                parent.rmdir()
            except OSError:
                break


def _remove_tree(root: Path) -> None:
    def make_writable_and_retry(function: Callable, path: str, *_exc: object) -> None:
        # Tools sometimes leave read-only directories (chmod a-w on finished results).
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(root, onerror=make_writable_and_retry)


def lock_if_unheld(path: Path) -> int | None:
    """An exclusive lock on `path` when nobody holds one (the open file, to close when done), else
    None; None too when the file is gone, or was replaced between our open and our lock (whoever
    removed it removed what it guarded, and a new one belongs to someone else)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def sweep_stale_attempts(scratch_dir: Path) -> list[Path]:
    """Removes attempt directories whose runner died without cleaning up (SIGKILL, OOM kill).

    Several jobs share an instance's scratch volume, so only directories whose lock nobody
    holds are removed; a runner holds its lock until its directory is gone.
    """
    removed = []
    for lock in scratch_dir.glob(f"labbatch/*/attempt-*/{LOCK_NAME}"):
        fd = lock_if_unheld(lock)
        if fd is None:
            continue
        try:
            shutil.rmtree(lock.parent, ignore_errors=True)
            removed.append(lock.parent)
        finally:
            os.close(fd)
        try:
            lock.parent.parent.rmdir()
        except OSError:
            pass
    return removed


class PeakUsage:
    """Samples the bytes under a directory so the manifest can report the peak scratch use."""

    def __init__(self, root: Path, interval_seconds: float = 1.0) -> None:
        self._root = root
        self._interval = interval_seconds
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scratch-usage", daemon=True)

    @property
    def peak(self) -> int:
        return self._peak

    def sample(self) -> None:
        self._peak = max(self._peak, tree_bytes(self._root))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> "PeakUsage":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
