"""Runner failures and the exit codes that tell them apart (documented in README.md)."""

from __future__ import annotations

from enum import IntEnum


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


class RunnerError(Exception):
    """A failure the runner can name in one line; `code` picks the exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        return self.code.name.lower()


class Terminated(BaseException):
    """Raised in the main thread by the signal handler (BaseException: no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
