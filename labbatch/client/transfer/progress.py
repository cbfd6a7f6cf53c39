"""Transfer progress on stderr: a byte bar and a file count (rich), nothing when stderr is no terminal."""

from __future__ import annotations

import threading
from typing import Any


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


def files_text(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def human_bytes(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size} bytes"
