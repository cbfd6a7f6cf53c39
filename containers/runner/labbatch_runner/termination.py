"""SIGTERM (spot reclaim, cancel, timeout) and SIGINT as an exception in the main thread.

Batch sends SIGTERM and, 30 s later, SIGKILL. Raising `Terminated` unwinds whatever phase is
running through its own clean-up (stopping s5cmd or the tool) to the one place that reports
and removes the scratch directory. Only the first signal raises: the clean-up that follows
must not be cut short by a second one.
"""

from __future__ import annotations

import signal
from types import FrameType

from .errors import Terminated

_HANDLED = (signal.SIGTERM, signal.SIGINT)


class TerminationGuard:
    def __init__(self) -> None:
        self.received: int | None = None
        self._armed = True
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None or not self._armed:
            self.received = self.received or signum
            return
        self.received = signum
        self._armed = False
        raise Terminated(signum)

    def disarm(self) -> None:
        """From here on a signal is remembered, not raised: reporting and clean-up must finish."""
        self._armed = False

    def __enter__(self) -> "TerminationGuard":
        for signum in _HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
