"""A single thread that hands items to a consumer in the order they were produced.

State-change events must reach the ledger in order per job, and a slow consumer (the real
status handler writing to DynamoDB) must never hold up scheduling: producers only enqueue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
_STOP = object()


class SerialDelivery(Generic[Item]):
    """`consume` gets lists of items: one item at a time, or whatever has queued up when
    `batched` (log lines, which a sink sends in one call)."""

    def __init__(self, name: str, consume: Callable[[list[Item]], None], *, batched: bool = False) -> None:
        self._consume = consume
        self._batched = batched
        self._queue: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Item) -> None:
        with self._count_lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(item)

    def wait_idle(self, timeout: float) -> bool:
        """True once everything put so far has been consumed."""
        return self._idle.wait(timeout)

    def close(self, timeout: float) -> None:
        """Delivers what is queued (for at most `timeout` seconds), then stops."""
        deadline = time.monotonic() + timeout
        self._idle.wait(timeout)
        self._queue.put(_STOP)
        self._thread.join(max(deadline - time.monotonic(), 0.1))

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if self._batched:
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            stop = any(item is _STOP for item in items)
            items = [item for item in items if item is not _STOP]
            groups = [items] if self._batched else [[item] for item in items]
            for group in groups:
                if not group:
                    continue
                try:
                    self._consume(group)
                except Exception:  # noqa: BLE001 - one bad delivery must not stop the rest
                    log.exception("%s: consumer failed", self._thread.name)
            with self._count_lock:
                self._pending -= len(items)
                if self._pending == 0:
                    self._idle.set()
            if stop:
                return
