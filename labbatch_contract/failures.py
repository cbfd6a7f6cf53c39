"""What `failure` on a FAILED job record can say, and which classes LabBatch recovers from.

The status updater (lambda/labbatch_status/failure_classes.py) decides the class; the client reads it
to know whether a recovery may still follow.
"""

from __future__ import annotations

from typing import Literal, get_args

# The one spelling of the classes. Their order breaks ties (an array job's class is the one
# most of its failed children share) and is the order of the names below.
Failure = Literal[
    "spot_reclaimed", "infrastructure", "out_of_memory", "out_of_scratch", "timeout", "cancelled", "application"
]
FAILURE_CLASSES: tuple[str, ...] = get_args(Failure)
SPOT_RECLAIMED, INFRASTRUCTURE, OUT_OF_MEMORY, OUT_OF_SCRATCH, TIMEOUT, CANCELLED, APPLICATION = FAILURE_CLASSES
RecoveryKind = Literal["spot_to_on_demand", "more_memory", "infrastructure_retry"]
RECOVERY_KINDS: tuple[str, ...] = get_args(RecoveryKind)
SPOT_TO_ON_DEMAND, MORE_MEMORY, INFRASTRUCTURE_RETRY = RECOVERY_KINDS
# Failure class -> the one recovery LabBatch may make of it; every other class is final.
RECOVERY_FOR: dict[str, str] = {
    SPOT_RECLAIMED: SPOT_TO_ON_DEMAND,
    OUT_OF_MEMORY: MORE_MEMORY,
    INFRASTRUCTURE: INFRASTRUCTURE_RETRY,
}
RECOVERABLE_FAILURES = frozenset(RECOVERY_FOR)
