"""The status updater gets what the template's EventBridge rule matches, and nothing else."""

from __future__ import annotations

import pytest

from labbatch.local.event_rules import EventRules
from labbatch.local.batch.events import job_state_change

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/labbatch-example-spot"
# The rule as the template has it (lambda constructs' JobStateChanges), intrinsics resolved.
RULE = ("JobStateChanges", {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"],
                            "detail": {"jobQueue": [QUEUE, QUEUE.replace("spot", "on-demand")]}})


def event(queue: str = QUEUE, **changes) -> dict:
    found = job_state_change({"jobArn": "arn:aws:batch:us-east-1:123456789012:job/x", "jobQueue": queue,
                              "status": "RUNNING"}, account="123456789012", region="us-east-1")
    found.update(changes)
    return found


def test_a_job_state_change_on_the_labs_queue_matches():
    assert EventRules([RULE]).matching(event()) == ["JobStateChanges"]


@pytest.mark.parametrize("other", [
    event(queue=QUEUE.replace("example", "other-lab")),  # another lab's queue in the same account
    event(source="aws.ecs"),
    event(**{"detail-type": "Batch Job Queue Blocked"}),
])
def test_events_the_pattern_does_not_match_go_nowhere(other):
    assert EventRules([RULE]).matching(other) == []


def test_content_filters_follow_eventbridge(tmp_path):
    rules = EventRules([("prefix", {"detail": {"status": [{"prefix": "SUCC"}]}}),
                        ("anything-but", {"detail": {"status": [{"anything-but": ["RUNNING"]}]}}),
                        ("exists", {"detail": {"statusReason": [{"exists": False}]}})])
    succeeded = event()
    succeeded["detail"]["status"] = "SUCCEEDED"
    assert sorted(rules.matching(succeeded)) == ["anything-but", "exists", "prefix"]
    assert rules.matching(event()) == ["exists"]


def test_no_rule_at_all_is_an_error_not_an_open_door():
    with pytest.raises(ValueError, match="no EventBridge rule"):
        EventRules([])
