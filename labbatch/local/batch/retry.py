"""Batch's retry strategy: how many attempts, and which failed attempts `evaluateOnExit` retries.

Semantics as AWS documents them: rules are tried in order and the first whose every given
condition matches decides; a failed attempt that matches no rule is retried while attempts
remain (which is why LabBatch's rules end with `onReason: "*"` -> EXIT). A pattern matches
exactly, or by prefix when it ends in its one allowed `*`. A value the attempt does not have
(no exit code after a spot reclaim, no container reason) is matched as the empty string, so
`"*"` still catches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

MIN_ATTEMPTS, MAX_ATTEMPTS = 1, 10
MAX_RULES = 5
MAX_PATTERN_CHARS = 512
# Batch's allowed pattern characters; "Host EC2*" and "OutOfMemoryError: Container*" both fit.
_REASON_PATTERN = re.compile(r"^[A-Za-z0-9.: \t]*\*?$")
_EXIT_CODE_PATTERN = re.compile(r"^[0-9]*\*?$")


class RetryStrategyError(ValueError):
    """A retry strategy Batch would refuse; the message names the field."""


@dataclass(frozen=True)
class RetryRule:
    action: Literal["RETRY", "EXIT"]
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None

    def matches(self, *, status_reason: str | None, reason: str | None, exit_code: int | None) -> bool:
        checks = (
            (self.on_status_reason, status_reason or ""),
            (self.on_reason, reason or ""),
            (self.on_exit_code, "" if exit_code is None else str(exit_code)),
        )
        return all(pattern_matches(pattern, value) for pattern, value in checks if pattern is not None)

    def to_batch(self) -> dict[str, str]:
        shape = {"action": self.action}
        for key, value in (("onStatusReason", self.on_status_reason), ("onReason", self.on_reason),
                           ("onExitCode", self.on_exit_code)):
            if value is not None:
                shape[key] = value
        return shape


@dataclass(frozen=True)
class RetryStrategy:
    attempts: int = 1
    evaluate_on_exit: tuple[RetryRule, ...] = ()

    def __post_init__(self) -> None:
        if not MIN_ATTEMPTS <= self.attempts <= MAX_ATTEMPTS:
            raise RetryStrategyError(
                f"retryStrategy.attempts is {self.attempts} (allowed: {MIN_ATTEMPTS}-{MAX_ATTEMPTS})")
        if len(self.evaluate_on_exit) > MAX_RULES:
            raise RetryStrategyError(
                f"retryStrategy.evaluateOnExit has {len(self.evaluate_on_exit)} entries (allowed: at most {MAX_RULES})")
        object.__setattr__(self, "evaluate_on_exit", tuple(self.evaluate_on_exit))

    @classmethod
    def from_batch(cls, shape: Mapping[str, Any]) -> "RetryStrategy":
        """From Batch's JSON shape, validated as SubmitJob and RegisterJobDefinition validate it."""
        attempts = shape.get("attempts", 1)
        if not isinstance(attempts, int) or isinstance(attempts, bool):
            raise RetryStrategyError(f"retryStrategy.attempts must be an integer, got {attempts!r}")
        rules = shape.get("evaluateOnExit") or []
        if not isinstance(rules, list):
            raise RetryStrategyError("retryStrategy.evaluateOnExit must be a list")
        return cls(attempts=attempts, evaluate_on_exit=tuple(_rule(i, r) for i, r in enumerate(rules)))

    def to_batch(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"attempts": self.attempts}
        if self.evaluate_on_exit:
            shape["evaluateOnExit"] = [rule.to_batch() for rule in self.evaluate_on_exit]
        return shape

    def should_retry(self, *, attempts_made: int, status_reason: str | None, reason: str | None,
                     exit_code: int | None) -> bool:
        """For a failed attempt that Batch may retry at all (not a timeout, terminate or cancel)."""
        if attempts_made >= self.attempts:
            return False
        for rule in self.evaluate_on_exit:
            if rule.matches(status_reason=status_reason, reason=reason, exit_code=exit_code):
                return rule.action == "RETRY"
        return True


def pattern_matches(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _rule(position: int, shape: Any) -> RetryRule:
    where = f"retryStrategy.evaluateOnExit[{position}]"
    if not isinstance(shape, Mapping):
        raise RetryStrategyError(f"{where} must be an object")
    unknown = set(shape) - {"action", "onStatusReason", "onReason", "onExitCode"}
    if unknown:
        raise RetryStrategyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    action = str(shape.get("action", "")).upper()  # Batch takes the action in any case
    if action not in ("RETRY", "EXIT"):
        raise RetryStrategyError(f"{where}.action is {shape.get('action')!r} (allowed: RETRY, EXIT)")
    patterns = {}
    for key, grammar, allowed in (
        ("onStatusReason", _REASON_PATTERN, "letters, digits, '.', ':', spaces, and one trailing '*'"),
        ("onReason", _REASON_PATTERN, "letters, digits, '.', ':', spaces, and one trailing '*'"),
        ("onExitCode", _EXIT_CODE_PATTERN, "digits and one trailing '*'"),
    ):
        value = shape.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_PATTERN_CHARS or not grammar.match(value):
            raise RetryStrategyError(f"{where}.{key} is {value!r} (allowed: up to {MAX_PATTERN_CHARS} of {allowed})")
        patterns[key] = value
    if not patterns:
        raise RetryStrategyError(f"{where} needs at least one of onStatusReason, onReason, onExitCode")
    return RetryRule(action=action, on_status_reason=patterns.get("onStatusReason"),  # type: ignore[arg-type]
                     on_reason=patterns.get("onReason"), on_exit_code=patterns.get("onExitCode"))
