"""Why an instance never joined its cluster, as the instance tells it on its console.

A boot step that fails (lab_constructs/scratch_launch_template.py) keeps ecs.service stopped, so
the instance never joins its compute environment's ECS cluster and nothing that goes through ECS
can report it. EC2 still can: GetConsoleOutput returns the instance's serial console, which
/dev/console is on the ECS-optimized AMI (containers/runner/README.md, "When a boot step fails").
The boot step's failure handler writes one line there, `console_line(step, reason)`, and the
client (labbatch/client/boot_reasons.py, for `labbatch why` and `labbatch doctor`) reads it back with
`failures_in(console_text)`. Both sides take the prefix from here.

The instance tags below are put on every instance a compute environment launches
(ComputeResources.Tags): the client finds a compute environment's instances by them, and the
diagnose policy allows GetConsoleOutput only on instances carrying the lab's tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONSOLE_PREFIX = "labbatch-boot:"
FAILED = "FAILED"
# A console line is read back within the 64 KB EC2 keeps; a reason longer than this is cut.
MAX_REASON_CHARS = 800
# The tag naming the compute environment that launched an instance (with names.LAB_TAG), by its
# pool and kind: CloudFormation names the environment, and it cannot name itself in its own tags.
COMPUTE_ENVIRONMENT_TAG = "labbatch:compute-environment"
# Batch's computeResources.type of an environment -> its kind in the lab's layout.
KIND_OF_TYPE = {"SPOT": "spot", "EC2": "on-demand"}

# The prefix may follow console noise on the same line (a kernel timestamp, the tail of a systemd
# status line written without a newline); colour codes and carriage returns are the console's.
_LINE = re.compile(re.escape(CONSOLE_PREFIX) + rf" {FAILED} (?P<step>[A-Za-z0-9_.-]+): (?P<reason>.*)$")
_NOISE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


@dataclass(frozen=True)
class BootFailure:
    step: str
    reason: str


def compute_environment_tag(pool: str, kind: str) -> str:
    """The COMPUTE_ENVIRONMENT_TAG value of pool `pool`'s `kind` ("spot", "on-demand") environment."""
    return f"{pool}/{kind}"


def console_line(step: str, reason: str) -> str:
    """The line a failed boot step writes to the console (no newline)."""
    return f"{CONSOLE_PREFIX} {FAILED} {step}: {' '.join(reason.split())[:MAX_REASON_CHARS]}"


def console_format() -> str:
    """`console_line` as a printf format for the instance's shell: step, then reason."""
    return f"{CONSOLE_PREFIX} {FAILED} %s: %s\\n"


def failures_in(console_text: str) -> list[BootFailure]:
    """The boot failures a console shows, one per step (its latest line: a reboot writes again),
    in the order the steps first failed; none when the console shows none."""
    found: dict[str, BootFailure] = {}
    for line in _NOISE.sub("", console_text).splitlines():
        match = _LINE.search(line)
        if match:
            step = match.group("step")
            found[step] = BootFailure(step, match.group("reason").strip())
    return list(found.values())
