"""Why a job FAILED, as one of seven classes: what `failure` on a job record says.

Pure: it reads the final "Batch Job State Change" detail (the job's status reason, its last
attempt's exit code and container reason), whether a cancel was asked through the API, and,
where Batch's words cannot tell, the runner's manifest of that attempt
(containers/runner/README.md: exit codes and `failed_phase`). Local mode's executor reports
attempts in Batch's own words (labbatch/local/batch/reasons.py), so both classify alike.

Classes, first match wins:
- cancelled        asked through the API (record's `cancel`, or the API's stop reason), a job
                   queue's state time limit (MISCONFIGURATION:... / CAPACITY:...), a job that
                   never ran (no attempt: cancelled while queued), or a runner that was sent
                   SIGTERM for none of the reasons below (someone terminated it elsewhere)
- spot_reclaimed   the last attempt's host went away: `Host EC2 (instance i-...) terminated.`
                   (Batch retries those by the job definition's rule, so the last attempt
                   being reclaimed means every attempt was)
- timeout          `Job attempt duration exceeded timeout`
- out_of_memory    container reason `OutOfMemoryError: Container killed due to memory usage`
- infrastructure   could not start, pull or mount (CannotPullContainerError,
                   CannotStartContainerError, CannotCreateContainerError,
                   CannotInspectContainerError, ResourceInitializationError, `Task failed to
                   start`), no exit code at all, or the runner's manifest says staging data
                   failed (67 checksum, 68 stage-in, 69 stage-out) or the runner itself broke (70)
- out_of_scratch   the runner's manifest says stage-in found too little scratch (66)
- application      the tool's own non-zero exit, and the request's own faults the runner
                   found (64 contract, 65 input unavailable), which a retry cannot fix

Exit codes 64-70 are also what sysexits-minded tools return, so they count as the runner's
only when the manifest of the same attempt says so (`failed_phase` other than `run`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

Failure = Literal[
    "spot_reclaimed", "infrastructure", "out_of_memory", "out_of_scratch", "timeout", "cancelled", "application"
]
FAILURE_CLASSES: tuple[str, ...] = (
    "spot_reclaimed", "infrastructure", "out_of_memory", "out_of_scratch", "timeout", "cancelled", "application"
)

# Batch's words (see labbatch/local/batch/reasons.py for where local mode says the same).
_HOST_TERMINATED = re.compile(r"^Host EC2 \(instance [^)]*\) terminated\.?$")
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
OUT_OF_MEMORY_PREFIX = "OutOfMemoryError"
INFRASTRUCTURE_PREFIXES = (
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
    "CannotInspectContainerError",
    "ResourceInitializationError",
    "Task failed to start",
)
TIME_LIMIT_PREFIXES = ("MISCONFIGURATION:", "CAPACITY:")
# The reason lambda/api (batch_requests.stop_job's caller) gives CancelJob/TerminateJob; the
# DELETE records `cancel` on the record only after Batch answered, so the FAILED event can
# arrive first: the reason says it too.
API_CANCEL_PREFIX = "Cancelled through the LabBatch API"

# Runner exit codes by what they mean for the job (containers/runner/README.md).
RUNNER_NO_SCRATCH = 66
RUNNER_INFRASTRUCTURE = frozenset({67, 68, 69, 70})
RUNNER_REQUEST_FAULTS = frozenset({64, 65})
RUNNER_PHASES = frozenset({"contract", "stage_in", "stage_out", "terminated"})


@dataclass(frozen=True)
class AttemptEvidence:
    exit_code: int | None
    container_reason: str | None
    status_reason: str | None


def is_host_terminated(reason: str | None) -> bool:
    return bool(reason) and _HOST_TERMINATED.match(reason.strip()) is not None


def _starts(reason: str | None, prefixes: Iterable[str]) -> bool:
    return bool(reason) and reason.lstrip().startswith(tuple(prefixes))


def manifest_wanted(last: AttemptEvidence | None) -> bool:
    """True when only the runner's manifest can tell this exit code's meaning."""
    return last is not None and last.exit_code is not None and (
        64 <= last.exit_code <= 70 or last.exit_code in (130, 143))


def classify(
    *,
    status_reason: str | None,
    attempts: list[AttemptEvidence],
    cancel_requested: bool = False,
    manifest: Mapping[str, Any] | None = None,
) -> str:
    """The failure class of a FAILED (non-array-parent) job; see the module docstring."""
    if cancel_requested or _starts(status_reason, (API_CANCEL_PREFIX,)):
        return "cancelled"
    if _starts(status_reason, TIME_LIMIT_PREFIXES):
        return "cancelled"
    if not attempts:
        return "cancelled"
    last = attempts[-1]
    reasons = (last.status_reason, status_reason)
    if any(is_host_terminated(r) for r in reasons):
        return "spot_reclaimed"
    if any((r or "").strip() == TIMEOUT_REASON for r in reasons):
        return "timeout"
    if _starts(last.container_reason, (OUT_OF_MEMORY_PREFIX,)):
        return "out_of_memory"
    if _starts(last.container_reason, INFRASTRUCTURE_PREFIXES) or any(
            _starts(r, INFRASTRUCTURE_PREFIXES) for r in reasons):
        return "infrastructure"
    if last.exit_code is None:
        return "infrastructure"
    runner = _runner_failure(last.exit_code, manifest, attempt_number=len(attempts))
    if runner is not None:
        return runner
    if last.exit_code != 0:
        return "application"
    # FAILED with exit code 0: Batch lost track of a container that exited cleanly.
    return "infrastructure"


def _runner_failure(exit_code: int, manifest: Mapping[str, Any] | None, *, attempt_number: int) -> str | None:
    if not isinstance(manifest, Mapping) or manifest.get("exit_code") != exit_code:
        return None
    if manifest.get("attempt") not in (None, attempt_number):
        return None  # an earlier attempt's manifest: says nothing about this one
    phase = manifest.get("failed_phase")
    if phase not in RUNNER_PHASES:
        return None
    if phase == "terminated":
        return "cancelled"
    if exit_code == RUNNER_NO_SCRATCH and phase == "stage_in":
        return "out_of_scratch"
    if exit_code in RUNNER_INFRASTRUCTURE:
        return "infrastructure"
    if exit_code in RUNNER_REQUEST_FAULTS:
        return "application"
    return None


def classify_array_parent(*, status_reason: str | None, cancel_requested: bool,
                          child_failures: Mapping[str, int] | None) -> str:
    """An array job failed because children did: the class most of its failed children share
    (ties: the order of FAILURE_CLASSES), or `application` when none was recorded."""
    if cancel_requested or _starts(status_reason, (API_CANCEL_PREFIX,) + TIME_LIMIT_PREFIXES):
        return "cancelled"
    counts = {k: int(v) for k, v in (child_failures or {}).items() if k in FAILURE_CLASSES and int(v) > 0}
    if not counts:
        return "application"
    return max(FAILURE_CLASSES, key=lambda k: (counts.get(k, 0), -FAILURE_CLASSES.index(k)))
