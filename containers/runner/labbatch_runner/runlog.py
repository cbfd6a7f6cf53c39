"""The runner's own log: one line per event on stderr (CloudWatch) and kept for logs/runner.log."""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone
from typing import TextIO


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunnerLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def info(self, message: str) -> None:
        self._emit(message)

    def error(self, message: str) -> None:
        self._emit(f"error: {message}")

    def _emit(self, message: str) -> None:
        with self._lock:
            self._lines.append(f"{utc_now()} {message}")
            stream = self._stream or sys.stderr
            print(f"labbatch-runner: {message}", file=stream, flush=True)

    def text(self) -> str:
        with self._lock:
            return "".join(line + "\n" for line in self._lines)
