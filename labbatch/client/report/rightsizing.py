"""Right-sizing: what a pipeline should ask for, from what its attempts used.

The rule, as the report states it (RULE):
- only successful attempts with a measured peak count, and at least MIN_SAMPLES of them;
- memory: the PERCENTILE-th percentile of peak memory plus MEMORY_HEADROOM, never below the
  largest peak of any successful attempt, and never at or below a request that an attempt ran
  out of memory at (then OOM_HEADROOM above the largest such request); rounded up to
  MEMORY_STEP_MIB;
- vCPUs: the PERCENTILE-th percentile of vCPUs used (CPU time / run time) plus CPU_HEADROOM,
  rounded up to a whole vCPU, never below the most any successful attempt kept busy, at least 1;
- the saving: the observed attempts' run hours priced at the current and the recommended
  request (costing.attempt_cost's rule), the difference at the observed volume.

A pure module: figures in, a Recommendation out; nothing here reads the ledger or the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from labbatch_contract.failures import OUT_OF_MEMORY
from labbatch_contract.measures import used_vcpus

PERCENTILE = 95
MEMORY_HEADROOM = 0.25
CPU_HEADROOM = 0.20
OOM_HEADROOM = 0.25
MIN_SAMPLES = 10
MEMORY_STEP_MIB = 256

RULE = (f"Recommended from successful attempts only, and never from fewer than {MIN_SAMPLES}: memory is the "
        f"{PERCENTILE}th percentile of peak memory plus {MEMORY_HEADROOM:.0%}, never below the largest peak of any "
        f"successful attempt, and at least {OOM_HEADROOM:.0%} above any request an attempt ran out of memory at, "
        f"rounded up to {MEMORY_STEP_MIB} MiB; vCPUs are the {PERCENTILE}th percentile of vCPUs used (CPU time / run "
        f"time) plus {CPU_HEADROOM:.0%}, rounded up, never below the most any successful attempt kept busy. The "
        "saving prices the observed attempts' run hours at the current and the recommended request.")


@dataclass(frozen=True)
class Recommendation:
    pipeline: str
    samples: int  # successful attempts with a measured peak
    current_vcpus: int | None
    current_memory_mib: int | None
    vcpus: int | None = None
    memory_mib: int | None = None
    saving_usd: float | None = None  # at the observed volume; negative: the recommendation costs more
    reason: str = ""  # why there is no recommendation, or what raised it
    lab_change: str | None = None

    @property
    def changes(self) -> bool:
        return self.lab_change is not None


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct % of values at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def recommend(pipeline: str, attempts: Sequence[Mapping[str, Any]], *, lab_file: str,
              price: Callable[[Mapping[str, Any], int, int], float] | None = None,
              current_vcpus: int | None = None, current_memory_mib: int | None = None) -> Recommendation:
    """`attempts`: the pipeline's attempt figures (labbatch_contract.measures), each with
    `succeeded`; `price(attempt, vcpus, memory_mib)` what the attempt would cost at that request;
    `current_*`: what the lab file asks for now (else what most attempts asked for)."""
    current_vcpus = current_vcpus or _most_common([a.get("vcpus") for a in attempts])
    current_memory = current_memory_mib or _most_common([a.get("memory_mib") for a in attempts])
    ok = [a for a in attempts if a.get("succeeded") and isinstance(a.get("peak_memory_mib"), (int, float))]
    base = Recommendation(pipeline, len(ok), current_vcpus, current_memory)
    if len(ok) < MIN_SAMPLES:
        return _replace(base, reason=f"{len(ok)} successful attempts with measured peaks; "
                                     f"at least {MIN_SAMPLES} are needed for a recommendation")
    peaks = [float(a["peak_memory_mib"]) for a in ok]
    memory = max(percentile(peaks, PERCENTILE) * (1 + MEMORY_HEADROOM), max(peaks))
    notes = []
    oom_requests = [a["memory_mib"] for a in attempts
                    if a.get("failure") == OUT_OF_MEMORY and isinstance(a.get("memory_mib"), (int, float))]
    if oom_requests:
        floor = max(oom_requests) * (1 + OOM_HEADROOM)
        if floor > memory:
            memory = floor
            notes.append(f"raised to {OOM_HEADROOM:.0%} above {max(oom_requests)} MiB, which an attempt ran out of "
                         "memory at")
    memory_mib = _round_up(memory, MEMORY_STEP_MIB)
    used = [u for u in (used_vcpus(a) for a in ok) if u is not None]
    if used:
        vcpus = max(1, math.ceil(percentile(used, PERCENTILE) * (1 + CPU_HEADROOM)), math.ceil(max(used) - 1e-9))
    else:
        vcpus = current_vcpus
        notes.append("no CPU time measured: vCPUs left as they are")
    saving = None
    if price is not None and vcpus is not None:
        saving = round(sum(price(a, a.get("vcpus") or vcpus, a.get("memory_mib") or memory_mib) - price(a, vcpus, memory_mib)
                           for a in attempts), 6)
    change = lab_change(lab_file, pipeline, current_vcpus=current_vcpus, current_memory_mib=current_memory,
                        vcpus=vcpus, memory_mib=memory_mib)
    return _replace(base, vcpus=vcpus, memory_mib=memory_mib, saving_usd=saving, reason="; ".join(notes),
                    lab_change=change)


def lab_change(lab_file: str, pipeline: str, *, current_vcpus: int | None, current_memory_mib: int | None,
               vcpus: int | None, memory_mib: int | None) -> str | None:
    """The lines to change in the lab file; None when the request is already right."""
    lines = []
    if vcpus is not None and vcpus != current_vcpus:
        lines.append(f"    vcpus: {vcpus}  # was {current_vcpus}")
    if memory_mib is not None and memory_mib != current_memory_mib:
        lines.append(f"    memory_mib: {memory_mib}  # was {current_memory_mib}")
    if not lines:
        return None
    return "\n".join([f"# {lab_file}", "pipelines:", f"  {pipeline}:", *lines])


def _most_common(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(set(present), key=present.count) if present else None


def _replace(rec: Recommendation, **changes: Any) -> Recommendation:
    from dataclasses import replace

    return replace(rec, **changes)
