"""What `failure` on a FAILED job record can say, and which classes LabBatch recovers from.

The status updater (lambda/status/failure_classes.py) decides the class; the client reads it
to know whether a recovery may still follow.
"""

from __future__ import annotations

from typing import Literal

Failure = Literal[
    "spot_reclaimed", "infrastructure", "out_of_memory", "out_of_scratch", "timeout", "cancelled", "application"
]
FAILURE_CLASSES: tuple[str, ...] = (
    "spot_reclaimed", "infrastructure", "out_of_memory", "out_of_scratch", "timeout", "cancelled", "application"
)
RecoveryKind = Literal["spot_to_on_demand", "more_memory", "infrastructure_retry"]
# Failure class -> the one recovery LabBatch may make of it; every other class is final.
RECOVERY_FOR: dict[str, str] = {
    "spot_reclaimed": "spot_to_on_demand",
    "out_of_memory": "more_memory",
    "infrastructure": "infrastructure_retry",
}
RECOVERABLE_FAILURES = frozenset(RECOVERY_FOR)
