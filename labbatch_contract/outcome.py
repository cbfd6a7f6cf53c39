"""How a runner attempt ends, as every reader of it sees it: exit codes, phases, the files it leaves.

The runner (containers/runner) writes these; the status updater classifies a failure by them,
and the client (`labbatch results`, `labbatch logs`, `labbatch doctor`) and the TES routes read
the manifest and logs under a job's output prefix. containers/runner/README.md documents them
for people.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, get_args


class ExitCode(IntEnum):
    # 64-70 follow sysexits.h loosely so they stand apart from the usual 1/2 of tools; the
    # manifest's failed_phase removes any remaining ambiguity with a tool that uses them too.
    CONTRACT = 64
    INPUT_UNAVAILABLE = 65
    NO_SCRATCH_SPACE = 66
    CHECKSUM_MISMATCH = 67
    STAGE_IN_FAILED = 68
    STAGE_OUT_FAILED = 69
    INTERNAL = 70
    # Shell conventions, so that people read them the way they already do.
    TOOL_NOT_EXECUTABLE = 126
    TOOL_NOT_FOUND = 127
    INTERRUPTED = 130
    TERMINATED = 143


# The runner's own range: what a tool may return too, so a reader needs the manifest to tell.
RUNNER_RANGE = range(ExitCode.CONTRACT, ExitCode.INTERNAL + 1)
# Signals the runner was sent (128 + SIGINT, 128 + SIGTERM): the tool's or the runner's, by the manifest.
SIGNAL_EXITS = frozenset({ExitCode.INTERRUPTED, ExitCode.TERMINATED})
# 128 + SIGKILL: the runner's tool killed outright, by the kernel's OOM killer among others;
# the manifest's `tool.oom_killed` says whether it was that.
KILLED = 137

# What each code means for the job (lambda/labbatch_status/failure_classes.py).
INFRASTRUCTURE_EXITS = frozenset({ExitCode.CHECKSUM_MISMATCH, ExitCode.STAGE_IN_FAILED,
                                  ExitCode.STAGE_OUT_FAILED, ExitCode.INTERNAL})
REQUEST_FAULT_EXITS = frozenset({ExitCode.CONTRACT, ExitCode.INPUT_UNAVAILABLE})

# An attempt's phases, in order; `failed_phase` in the manifest names one of them, or
# TERMINATED when a signal ended it.
Phase = Literal["contract", "stage_in", "run", "stage_out", "terminated"]
PHASES: tuple[str, ...] = get_args(Phase)
CONTRACT, STAGE_IN, RUN, STAGE_OUT, TERMINATED = PHASES
# Phases in which a failure is the runner's own, not the tool's.
RUNNER_PHASES = frozenset(PHASES) - {RUN}

# Under the job's (or array child's) output prefix. Only these names are reserved, not the
# whole of logs/: tools write their own logs there too (salmon quant -o writes logs/salmon_quant.log).
MANIFEST_NAME = "manifest.json"
LOGS_DIR = "logs/"
TOOL_LOG_NAME = "tool.log"
RUNNER_LOG_NAME = "runner.log"
TOOL_LOG = LOGS_DIR + TOOL_LOG_NAME
RUNNER_LOG = LOGS_DIR + RUNNER_LOG_NAME
RESERVED_OUTPUTS = (MANIFEST_NAME, TOOL_LOG, RUNNER_LOG)


def manifest_key(prefix: str) -> str:
    """The manifest of the attempt whose outputs are under `prefix` (a key or s3:// URI ending in /)."""
    return prefix + MANIFEST_NAME


def manifest_tells_more(exit_code: int | None) -> bool:
    """True when the attempt's manifest may class an exit code otherwise than as the tool's own:
    the runner's codes, and a SIGKILL that the kernel's OOM killer may have sent."""
    return runner_failure_possible(exit_code) or exit_code == KILLED


def runner_failure_possible(exit_code: int | None) -> bool:
    """True when an exit code may be the runner's, which only the attempt's manifest can tell."""
    return exit_code is not None and (exit_code in RUNNER_RANGE or exit_code in SIGNAL_EXITS)
