"""Whether the kernel's OOM killer ended the tool, as the container's own memory cgroup counts it.

An engine's or ECS's "OutOfMemoryError" reason is not always there: Docker 20.10 on cgroup v1
leaves `OOMKilled` false for a container whose process the kernel killed for memory (seen on this
project's machines, on and off). The kernel's count is reliable and visible from inside the
container: `oom_kill N` in `memory.events` (cgroup v2) or `memory.oom_control` (v1). The runner
is that container's first process and is not what the OOM killer picks (the tool is the big one),
so it reads the count before and after the tool and says in the manifest whether it went up.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# v2 first (a unified hierarchy has memory.events at its root), then v1's memory controller.
COUNTER_FILES = ("memory.events", "memory/memory.oom_control")


def oom_kill_count(root: Path | None = None) -> int | None:
    """The `oom_kill` count of this process's memory cgroup, or None where none can be read."""
    root = CGROUP_ROOT if root is None else root
    for name in COUNTER_FILES:
        try:
            text = (root / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def killed_for_memory(before: int | None, after: int | None) -> bool | None:
    """True when the count went up while the tool ran; None when it could not be read."""
    if before is None or after is None:
        return None
    return after > before
