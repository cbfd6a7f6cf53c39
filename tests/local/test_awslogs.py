"""Job output shipped as the awslogs driver ships it: no empty events, long lines split at character
boundaries within CloudWatch's event limit, bursts in calls within its batch limits."""

from __future__ import annotations

from labbatch.local import awslogs


def test_an_empty_line_is_no_event_and_a_blank_one_is_kept():
    assert list(awslogs.events(["one", "", "three", " "])) == ["one", "three", " "]


def test_a_long_line_is_split_at_character_boundaries_within_the_event_limit():
    line = "é" * 200_000 + "x" * 5  # 400,005 bytes of UTF-8, two bytes a character
    parts = list(awslogs.events([line]))
    assert "".join(parts) == line
    assert all(len(part.encode()) <= awslogs.MAX_EVENT_BYTES for part in parts)
    assert len(parts[0].encode()) >= awslogs.MAX_EVENT_BYTES - 1  # as full as whole characters allow


def test_binary_output_counts_as_its_replacement_characters():
    decoded = bytes(range(128, 256)).decode("utf-8", "replace") * 1000  # 128,000 U+FFFD: 384,000 bytes
    parts = list(awslogs.events([decoded]))
    assert "".join(parts) == decoded
    assert all(len(part.encode()) <= awslogs.MAX_EVENT_BYTES for part in parts)


def test_a_burst_goes_in_calls_within_the_batch_limits():
    lines = [f"line {i}" for i in range(100_000)] + ["y" * 200_000] * 12
    batches = list(awslogs.batches(awslogs.events(lines)))
    assert [m for batch in batches for m in batch] == lines
    for batch in batches:
        assert len(batch) <= awslogs.MAX_BATCH_EVENTS
        assert sum(len(m.encode()) + awslogs.EVENT_OVERHEAD_BYTES for m in batch) <= awslogs.MAX_BATCH_BYTES
