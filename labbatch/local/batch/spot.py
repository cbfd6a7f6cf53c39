"""Spot interruptions: which attempts on a spot compute environment are reclaimed, when, and the
instance they were said to run on.

The choice is made once, as an attempt is planned (attempt.py carries it out), and is drawn
from one seeded generator so that a run's interruptions can be repeated.
"""

from __future__ import annotations

import random

from labbatch.local.batch.models import ComputeEnvironment


class SpotInterruptions:
    """`rate`: the share (0-1) of spot attempts reclaimed, each at a random moment within its first
    `within_seconds` of running; `seed` makes the choice repeatable."""

    def __init__(self, rate: float, within_seconds: float, seed: int | None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"spot_interruption_rate is {rate} (allowed: 0-1)")
        self._rate = rate
        self._window = within_seconds
        self._random = random.Random(seed)

    def draw(self, environment: ComputeEnvironment) -> tuple[float | None, str | None]:
        """(seconds into the attempt to reclaim it, its instance id), or (None, None): not reclaimed."""
        if environment.kind == "spot" and self._rate > 0 and self._random.random() < self._rate:
            reclaim_after = self._random.uniform(0.0, self._window)
            return reclaim_after, f"i-{self._random.getrandbits(68):017x}"[:19]
        return None, None
