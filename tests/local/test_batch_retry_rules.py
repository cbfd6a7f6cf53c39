"""Batch's evaluateOnExit semantics, rule by rule (the executor tests show them end to end)."""

from __future__ import annotations

import pytest

from labbatch.local.batch.retry import RetryStrategy, RetryStrategyError

LAB_RULES = RetryStrategy.from_batch({"attempts": 3, "evaluateOnExit": [
    {"action": "RETRY", "onStatusReason": "Host EC2*"}, {"action": "EXIT", "onReason": "*"}]})


def decide(strategy: RetryStrategy, attempts_made: int = 1, **outcome) -> bool:
    outcome = {"status_reason": None, "reason": None, "exit_code": None, **outcome}
    return strategy.should_retry(attempts_made=attempts_made, **outcome)


def test_lab_rules_retry_spot_reclaims_and_nothing_else():
    assert decide(LAB_RULES, status_reason="Host EC2 (instance i-0123456789abcdef0) terminated.")
    assert not decide(LAB_RULES, status_reason="Essential container in task exited", exit_code=1)
    # A missing reason is the empty string, which "*" matches: application failures stop.
    assert not decide(LAB_RULES, status_reason="Task failed to start",
                      reason="CannotStartContainerError: exec: executable file not found in $PATH: x")


def test_attempts_bound_every_retry():
    assert not decide(LAB_RULES, attempts_made=3, status_reason="Host EC2 (instance i-1) terminated.")


def test_no_matching_rule_means_retry():
    strategy = RetryStrategy.from_batch({"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "2"}]})
    assert decide(strategy, exit_code=1)
    assert not decide(strategy, exit_code=2)


def test_all_conditions_of_a_rule_must_match_and_the_first_matching_rule_wins():
    strategy = RetryStrategy.from_batch({"attempts": 5, "evaluateOnExit": [
        {"action": "EXIT", "onExitCode": "137", "onReason": "OutOfMemoryError*"},
        {"action": "RETRY", "onExitCode": "13*"},
        {"action": "EXIT", "onReason": "*"}]})
    assert not decide(strategy, exit_code=137, reason="OutOfMemoryError: Container killed due to memory usage")
    assert decide(strategy, exit_code=137)
    assert not decide(strategy, exit_code=1)


@pytest.mark.parametrize("shape", [
    {"attempts": 0}, {"attempts": 11},
    {"attempts": 2, "evaluateOnExit": [{"action": "MAYBE", "onExitCode": "1"}]},
    {"attempts": 2, "evaluateOnExit": [{"action": "RETRY"}]},
    {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "1*2"}]},
    {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onReason": "a*b*"}]},
    {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "1"}] * 6},
])
def test_strategies_batch_refuses_are_refused(shape):
    with pytest.raises(RetryStrategyError):
        RetryStrategy.from_batch(shape)
