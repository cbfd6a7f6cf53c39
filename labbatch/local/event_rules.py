"""EventBridge's routing, for local mode: an event reaches the status updater only when one of the
synthesized rules' patterns matches it, as on AWS.

The patterns are the templates' own (labbatch.local.iam.templates.event_patterns, intrinsics
resolved to local ARNs). Matching is moto's EventBridge pattern matcher (`moto.events.models.
EventPattern`, maintained with moto and already a dependency): exact values, prefix, anything-but,
numeric, exists and the other content filters EventBridge documents.
"""

from __future__ import annotations

import json
from typing import Any

from moto.events.models import EventPattern


class EventRules:
    def __init__(self, patterns: list[tuple[str, dict[str, Any]]]) -> None:
        if not patterns:
            raise ValueError("the synthesized templates have no EventBridge rule: nothing would reach the status updater")
        self._rules = [(name, EventPattern.load(json.dumps(pattern))) for name, pattern in patterns]
        self.dropped = 0  # events no rule matched: EventBridge delivers them nowhere

    def matching(self, event: dict[str, Any]) -> list[str]:
        """The rules whose pattern matches `event`."""
        return [name for name, pattern in self._rules if pattern.matches_event(event)]
