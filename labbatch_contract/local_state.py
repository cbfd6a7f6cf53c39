"""Where a running local lab says how to reach it: written by `labbatch local`, read by the client.

`$LABBATCH_HOME/local/<name>.json` (default `~/.labbatch`), mode 600: the JSON line the lab
printed when it was ready (API, emulator endpoint, credentials, buckets, PID).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

HOME_ENV = "LABBATCH_HOME"


def labbatch_home(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(HOME_ENV) or Path.home() / ".labbatch")


def local_state_path(name: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Where `labbatch local` leaves the JSON line it printed, for as long as it runs."""
    return labbatch_home(environ) / "local" / f"{name}.json"


def accepts_connections(url: str, timeout: float = 0.3) -> bool:
    """Whether something listens where a state file says a lab's API is."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
