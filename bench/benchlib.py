"""Small helpers the benchmarks share: statistics, formatting, and the summary rows `bench/run`
collects (each script writes them to the file named by `--summary`, when given).

Benchmarks print ratios against a baseline measured in the same run; nothing here asserts a time.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Iterable[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1): the value at least `share` of the samples are at or below."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float], scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
    """'median (min-max)' in the given unit."""
    return f"{median(values) * scale:.{digits}f} {unit} ({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})"


def ratio_spread(ratios: list[float]) -> str:
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x"
    return f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load:.2f} at start"


class Summary:
    """Rows for bench/run's table: what, figure, baseline, ratio, goal, verdict."""

    def __init__(self, bench: str):
        self.bench = bench
        self.rows: list[dict[str, Any]] = []

    def add(self, measure: str, figure: str, baseline: str = "", ratio: str = "", goal: str = "",
            met: bool | None = None) -> None:
        self.rows.append({"bench": self.bench, "measure": measure, "figure": figure, "baseline": baseline,
                          "ratio": ratio, "goal": goal, "met": met})

    def write(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps(self.rows, indent=1))


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")
