"""The state file of a running local lab: `~/.labbatch/local/<name>.json`, one lab per name.

`labbatch local` (and the demo, under a name of its own) claims the file before it starts
anything, by creating it exclusively with its PID in it, and fills it in once the lab is ready
(the JSON line it printed, mode 600: it holds the lab's credentials). A second lab under a name
whose owner is alive is refused, naming that owner's PID and API; a file whose owner is gone
(a lab that was killed or crashed) is stale and taken over. Stopping removes the file only if
it is still this process's, so stopping one lab never orphans another.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from labbatch_contract.local_state import accepts_connections, local_state_path


class LabAlreadyRunning(RuntimeError):
    def __init__(self, name: str, pid: int | None, api: str | None) -> None:
        self.name, self.pid, self.api = name, pid, api
        where = f"PID {pid}" + (f", API {api}" if api else ", still starting")
        super().__init__(f"local lab {name} is already running ({where}); stop it first, "
                         "or start this one under another name with --name")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), which tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses, so count from its end.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(state: Mapping[str, Any]) -> bool:
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        # Written before state files named their PID: alive if its API still answers.
        return isinstance(state.get("api"), str) and accepts_connections(state["api"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    started = state.get("pid_started")
    return started is None or process_start_time(pid) in (None, started)


class StateFile:
    """This process's claim on a lab name."""

    def __init__(self, name: str, environ: Mapping[str, str] = os.environ) -> None:
        self.name = name
        self.path = local_state_path(name, environ)
        self.pid = os.getpid()
        self.owner = {"pid": self.pid, "pid_started": process_start_time(self.pid)}

    def claim(self) -> None:
        """Raises LabAlreadyRunning when a live lab holds the name; takes a stale file over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        unreadable = 0
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                state = self._read()
                if state is None and unreadable < 10 and self.path.exists():
                    unreadable += 1  # another lab is writing its claim this very moment
                    time.sleep(0.05)
                    continue
                if state is not None and owner_alive(state):
                    raise LabAlreadyRunning(self.name, state.get("pid"), state.get("api")) from None
                self.path.unlink(missing_ok=True)  # stale (its lab is gone) or unreadable
                continue
            with os.fdopen(fd, "w") as out:
                json.dump({**self.owner, "name": self.name}, out)
            return
        raise LabAlreadyRunning(self.name, None, None)

    def publish(self, info: Mapping[str, Any]) -> None:
        """Replace the claim with the running lab's details, atomically, still mode 600."""
        temporary = self.path.with_name(f".{self.path.name}.{self.pid}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({**info, **self.owner, "name": self.name}, out)
        os.replace(temporary, self.path)

    def release(self) -> None:
        state = self._read()
        if state is not None and state.get("pid") == self.pid:
            self.path.unlink(missing_ok=True)

    def _read(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None
