"""Why a job FAILED, as one of seven classes: what `failure` on a job record says.

Pure: it reads the final "Batch Job State Change" detail (the job's status reason, its last
attempt's exit code and container reason), whether a cancel was asked through the API, and,
where Batch's words cannot tell, the runner's manifest of that attempt
(containers/runner/README.md: exit codes and `failed_phase`). Local mode's executor reports
attempts in Batch's own words (labbatch_contract/batch_reasons.py), so both classify alike.

Classes, first match wins:
- cancelled        asked through the API (record's `cancel`, or the API's stop reason), a job
                   queue's state time limit (MISCONFIGURATION:... / CAPACITY:...), a job that
                   never ran (no attempt: cancelled while queued), or a runner that was sent
                   SIGTERM for none of the reasons below (someone terminated it elsewhere)
- spot_reclaimed   the last attempt's host went away: `Host EC2 (instance i-...) terminated.`
                   (Batch retries those by the job definition's rule, so the last attempt
                   being reclaimed means every attempt was)
- timeout          `Job attempt duration exceeded timeout`
- out_of_memory    container reason `OutOfMemoryError: Container killed due to memory usage`,
                   or exit 137 with the runner's manifest saying the kernel's OOM killer ended
                   the tool (`tool.oom_killed`, from its memory cgroup's count)
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

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from labbatch_contract import batch_reasons as words
from labbatch_contract import manifest as manifests
from labbatch_contract import outcome
from labbatch_contract.failures import (APPLICATION, CANCELLED, FAILURE_CLASSES, INFRASTRUCTURE, OUT_OF_MEMORY,
                                        OUT_OF_SCRATCH, SPOT_RECLAIMED, TIMEOUT, Failure)
from labbatch_contract.outcome import ExitCode

# FAILURE_CLASSES and Failure are the contract's (labbatch_contract/failures.py), named here for callers.
__all__ = ["AttemptEvidence", "FAILURE_CLASSES", "Failure", "classify", "classify_array_parent", "manifest_wanted"]


@dataclass(frozen=True)
class AttemptEvidence:
    exit_code: int | None
    container_reason: str | None
    status_reason: str | None


def _starts(reason: str | None, prefixes: Iterable[str]) -> bool:
    return bool(reason) and reason.lstrip().startswith(tuple(prefixes))


def manifest_wanted(last: AttemptEvidence | None) -> bool:
    """True when only the runner's manifest can tell this exit code's meaning."""
    return last is not None and outcome.manifest_tells_more(last.exit_code)


def classify(
    *,
    status_reason: str | None,
    attempts: list[AttemptEvidence],
    cancel_requested: bool = False,
    manifest: Mapping[str, Any] | None = None,
) -> str:
    """The failure class of a FAILED (non-array-parent) job; see the module docstring."""
    if cancel_requested or _starts(status_reason, (words.API_CANCEL_PREFIX,)):
        return CANCELLED
    if _starts(status_reason, words.TIME_LIMIT_PREFIXES):
        return CANCELLED
    if not attempts:
        return CANCELLED
    last = attempts[-1]
    reasons = (last.status_reason, status_reason)
    if any(words.is_host_terminated(r) for r in reasons):
        return SPOT_RECLAIMED
    if any((r or "").strip() == words.TIMEOUT for r in reasons):
        return TIMEOUT
    if _starts(last.container_reason, (words.OUT_OF_MEMORY_PREFIX,)):
        return OUT_OF_MEMORY
    if _starts(last.container_reason, words.INFRASTRUCTURE_PREFIXES) or any(
            _starts(r, words.INFRASTRUCTURE_PREFIXES) for r in reasons):
        return INFRASTRUCTURE
    if last.exit_code is None:
        return INFRASTRUCTURE
    runner = _runner_failure(last.exit_code, manifest, attempt_number=len(attempts))
    if runner is not None:
        return runner
    if last.exit_code != 0:
        return APPLICATION
    # FAILED with exit code 0: Batch lost track of a container that exited cleanly.
    return INFRASTRUCTURE


def _runner_failure(exit_code: int, manifest: Mapping[str, Any] | None, *, attempt_number: int) -> str | None:
    if not manifests.is_of(manifest, attempts=attempt_number, exit_code=exit_code):
        return None  # another attempt's manifest (or none): says nothing about this one
    if exit_code == outcome.KILLED and manifests.oom_killed(manifest):
        # The kernel killed the tool for memory although the engine did not say so (Docker 20.10
        # on cgroup v1 leaves OOMKilled false at times); its cgroup's count, read by the runner, does.
        return OUT_OF_MEMORY
    phase = manifests.failed_phase(manifest)
    if phase not in outcome.RUNNER_PHASES:
        return None
    if phase == outcome.TERMINATED:
        return CANCELLED
    if exit_code == ExitCode.NO_SCRATCH_SPACE and phase == outcome.STAGE_IN:
        return OUT_OF_SCRATCH
    if exit_code in outcome.INFRASTRUCTURE_EXITS:
        return INFRASTRUCTURE
    if exit_code in outcome.REQUEST_FAULT_EXITS:
        return APPLICATION
    return None


def classify_array_parent(*, status_reason: str | None, cancel_requested: bool,
                          child_failures: Mapping[str, int] | None) -> str:
    """An array job failed because children did: the class most of its failed children share
    (ties: the order of FAILURE_CLASSES), or `application` when none was recorded."""
    if cancel_requested or _starts(status_reason, (words.API_CANCEL_PREFIX,) + words.TIME_LIMIT_PREFIXES):
        return CANCELLED
    counts = {k: int(v) for k, v in (child_failures or {}).items() if k in FAILURE_CLASSES and int(v) > 0}
    if not counts:
        return APPLICATION
    return max(FAILURE_CLASSES, key=lambda k: (counts.get(k, 0), -FAILURE_CLASSES.index(k)))
