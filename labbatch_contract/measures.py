"""What each attempt measured, as the ledger keeps it for reports: the one definition.

The status updater writes these figures when a job or array child ends (it has the Batch event's
attempts and reads the runner's manifest once); the job API serves them (`GET /jobs/{id}/report`,
`GET /report`) and `labbatch report` reads nothing else, so a 10,000-child array is a few paged
queries, never 10,000 manifest reads.

Layout:
- a job record, and an array child's item, carry `figures`: one string, compact JSON of a list
  with one array per Batch attempt, its values in ATTEMPT_FIELDS order (null when not known,
  trailing nulls left off). Positional and in one attribute because a 10,000-child array's
  figures are read back whole: named nested maps would triple the bytes (DynamoDB counts every
  attribute name in every item) and the time to read them (encode_figures, decode_figures);
- an array job's ended children are also gathered REPORT_BLOCK to an item, `<job_id>/report/<n>`
  (report_block_key; no record_type, so never listed; expiring with the children's items), whose
  string set `rows` holds one compact row per child (child_row: index, sample, status, figures).
  A string set because ADD creates it and adds to it in one write, and adding the same row again
  (a redelivered event) changes nothing. Reports read a 10,000-child array as 40 items in one
  BatchGetItem, never 10,000 items nor 10,000 manifests.

Only the last attempt has a manifest (every attempt of a job writes to the same prefix); earlier
attempts' figures come from the Batch event alone (times, exit code, reason).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from labbatch_contract import manifest as manifests
from labbatch_contract.batch_reasons import is_host_terminated
from labbatch_contract.failures import SPOT_RECLAIMED

FIGURES = "figures"
REPORT_ROWS = "rows"
# 250 rows of a few hundred bytes: well under DynamoDB's 400 KB item limit, and 10,000 children
# are 40 items, under BatchGetItem's 100 keys a call.
REPORT_BLOCK = 250

# One attempt's map. Times are ISO-8601 UTC; durations seconds; memory MiB; bytes bytes.
ATTEMPT_FIELDS = (
    "attempt",          # 1-based, Batch's order
    "started_at", "stopped_at",
    "queue_wait_s",     # from the job's creation (first attempt) or the previous attempt's end
    "run_s",            # started -> stopped, as Batch saw it
    "vcpus", "memory_mib",  # requested
    "peak_memory_mib",  # the tool's peak resident memory (runner's wait4)
    "cpu_s",            # the tool's CPU time (user + system); cpu_s / run_s is vCPUs used
    "bytes_in", "bytes_out",  # staged in (inputs' sizes) and out (outputs' sizes)
    "exit_code",
    "failure",          # the job's class on its last attempt; spot_reclaimed on an earlier one reclaimed
    "market",           # "spot" or "on-demand": the queue the attempt ran from
    "instance_type",    # when the runner could read it; local mode has none
    "stderr_tail",      # the tool's last output line as the runner named it, else Batch's reason
)
STDERR_TAIL_MAX_CHARS = 400
MIB = 1024 * 1024


def parse_time(moment: str | None) -> datetime | None:
    if not moment:
        return None
    try:
        return datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return round(max(0.0, (b - a).total_seconds()), 3)


def _tail(text: Any) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    text = " ".join(text.split())
    return text if len(text) <= STDERR_TAIL_MAX_CHARS else "..." + text[-(STDERR_TAIL_MAX_CHARS - 3):]


def manifest_figures(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the runner's manifest adds to its attempt's figures."""
    tool = manifests.tool_part(manifest)
    peaks = manifest.get(manifests.PEAK_MEMORY_BYTES)
    peak = peaks.get(manifests.TOOL) if isinstance(peaks, dict) else None
    cpu = tool.get(manifests.CPU_SECONDS)
    figures = {
        "peak_memory_mib": round(peak / MIB, 1) if isinstance(peak, (int, float)) else None,
        "cpu_s": cpu if isinstance(cpu, (int, float)) else None,
        "bytes_in": sum(i.get(manifests.SIZE) or 0 for i in manifests.entries(manifest, manifests.INPUTS)),
        "bytes_out": sum(o.get(manifests.SIZE) or 0 for o in manifests.entries(manifest, manifests.OUTPUTS)),
        "instance_type": manifest.get(manifests.INSTANCE_TYPE),
        "stderr_tail": _tail(manifests.error_message(manifest))
        if manifests.status(manifest) == manifests.FAILED else None,
    }
    return {key: value for key, value in figures.items() if value is not None}


def attempt_figures(*, attempts: Sequence[Mapping[str, Any]], created_at: str | None, vcpus: int | None,
                    memory_mib: int | None, market: str | None, failure: str | None,
                    manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One map per Batch attempt (`attempts`: the event's, each with started_at, stopped_at,
    exit_code, reason). `failure` is the job's class, given to its last attempt; earlier
    attempts of a job Batch retried failed too, and carry their exit code and reason.
    `manifest` is the last attempt's, or None when there is none (or it is another attempt's)."""
    rows: list[dict[str, Any]] = []
    previous_end = created_at
    for number, attempt in enumerate(attempts, start=1):
        last = number == len(attempts)
        started, stopped = attempt.get("started_at"), attempt.get("stopped_at")
        row: dict[str, Any] = {
            "attempt": number, "started_at": started, "stopped_at": stopped,
            "queue_wait_s": _seconds(previous_end, started), "run_s": _seconds(started, stopped),
            "vcpus": vcpus, "memory_mib": memory_mib, "exit_code": attempt.get("exit_code"),
            "market": market, "failure": failure if last else _earlier_failure(attempt),
            "stderr_tail": _tail(attempt.get("reason")) if attempt.get("exit_code") not in (0, None)
            or not last else None,
        }
        if last and manifest is not None:
            row.update(manifest_figures(manifest))
        rows.append({key: value for key, value in row.items() if value is not None})
        previous_end = stopped or previous_end
    return rows


def _earlier_failure(attempt: Mapping[str, Any]) -> str | None:
    """An attempt Batch retried: a spot reclaim is known from its reason alone (the timeline shows
    reclaims); other classes need the manifest only the last attempt has."""
    return SPOT_RECLAIMED if is_host_terminated(attempt.get("reason")) else None


def used_vcpus(row: Mapping[str, Any]) -> float | None:
    """vCPUs an attempt kept busy on average: its tool's CPU time over its run time."""
    cpu, run = row.get("cpu_s"), row.get("run_s")
    if not isinstance(cpu, (int, float)) or not isinstance(run, (int, float)) or run <= 0:
        return None
    return round(cpu / run, 3)


def attempts_with_tails(attempts: Sequence[Mapping[str, Any]],
                        figures: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's `attempts` with each failed one's `stderr_tail` where it says more than
    Batch's reason ("Essential container in task exited" names no cause; the tool's last line does)."""
    merged = []
    for attempt, row in zip(attempts, figures):
        attempt = dict(attempt)
        tail = row.get("stderr_tail")
        if tail and tail != attempt.get("reason"):
            attempt["stderr_tail"] = tail
        merged.append(attempt)
    return merged + [dict(a) for a in attempts[len(figures):]]


def figure_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Attempts' figures as positional arrays (ATTEMPT_FIELDS order, trailing nulls left off)."""
    encoded = []
    for row in rows:
        values = [row.get(name) for name in ATTEMPT_FIELDS]
        while values and values[-1] is None:
            values.pop()
        encoded.append(values)
    return encoded


def encode_figures(rows: Sequence[Mapping[str, Any]]) -> str:
    """The ledger's `figures` attribute."""
    return json.dumps(figure_rows(rows), separators=(",", ":"))


def decode_figures(value: Any, fields: Sequence[str] = ATTEMPT_FIELDS) -> list[dict[str, Any]]:
    """Attempts' figures as maps, from the ledger's string or the API's arrays (`fields`: the
    names the API sent with them, so an older or newer order still reads right)."""
    if value is None:
        return []
    rows = json.loads(value) if isinstance(value, str) else value
    if not isinstance(rows, list):
        raise ValueError(f"figures: expected a list of attempts, not {type(rows).__name__}")
    return [{name: v for name, v in zip(fields, row) if v is not None} for row in rows]


def report_block_key(job_id: str, block: int) -> str:
    """The ledger key of an array job's report block `block` (children block*REPORT_BLOCK on)."""
    return f"{job_id}/report/{block}"


def report_block_of(index: int) -> int:
    return index // REPORT_BLOCK


def report_block_count(array_size: int) -> int:
    return -(-array_size // REPORT_BLOCK)


def child_row(index: int, sample: str | None, status: str, figures: Sequence[Mapping[str, Any]]) -> str:
    """One ended child as its report block keeps it (deterministic: a redelivered event's row is
    the same string, which the string set keeps once)."""
    return json.dumps([index, sample, status, figure_rows(figures)], separators=(",", ":"))


def parse_child_row(text: str) -> dict[str, Any]:
    """A report row as the API answers it: index, sample, status and figures (positional arrays)."""
    index, sample, status, figures = json.loads(text)
    row = {"index": index, "status": status, FIGURES: figures}
    if sample is not None:
        row["sample"] = sample
    return row
