"""Job output into CloudWatch Logs as ECS's `awslogs` log driver ships it (moby's
daemon/logger/awslogs), so that `labbatch logs` shows locally what it shows in AWS.

- A line is one event; an empty line is none (the driver's loop runs `while len(bytes) > 0`,
  and CloudWatch refuses an empty message).
- A line longer than an event may be is split into several, at character boundaries: at most
  262,144 bytes an event including CloudWatch's 26 bytes of overhead, counted after invalid
  UTF-8 became U+FFFD (3 bytes each), as the driver counts.
- A PutLogEvents call carries at most 10,000 events and 1,048,576 bytes (messages plus 26 per
  event); a burst is sent in as many calls as that takes, and a call that fails loses its own
  events only, never the stream or the ones after it.
"""

from __future__ import annotations

from typing import Iterable, Iterator

EVENT_OVERHEAD_BYTES = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD_BYTES
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576


def events(lines: Iterable[str]) -> Iterator[str]:
    """The messages for decoded output lines (invalid bytes already U+FFFD)."""
    for line in lines:
        while line:
            encoded = line.encode("utf-8", "surrogatepass")
            if len(encoded) <= MAX_EVENT_BYTES:
                yield line
                break
            # The longest prefix of whole characters within the limit.
            cut = encoded[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
            yield cut
            line = line[len(cut):]


def batches(messages: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for message in messages:
        cost = len(message.encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD_BYTES
        if batch and (len(batch) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += cost
    if batch:
        yield batch
