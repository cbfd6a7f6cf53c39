"""Runner failures and the exit codes that tell them apart (documented in README.md)."""

from __future__ import annotations

from labbatch_contract.outcome import ExitCode

__all__ = ["ExitCode", "RunnerError", "Terminated"]


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
