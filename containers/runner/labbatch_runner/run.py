"""Running the pipeline's tool as a child process, its output streamed and kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

from labbatch_contract.outcome import ExitCode

from . import oomkills
from .errors import RunnerError

# Batch allows 30 s between SIGTERM and SIGKILL; the rest is for uploading logs and manifest.
TOOL_STOP_GRACE_SECONDS = 10
_LINE_LIMIT = 1 << 16  # a tool printing megabytes without a newline still streams


@dataclass(frozen=True)
class ToolResult:
    exit_code: int  # shell convention: 128 + N when killed by signal N
    signal: str | None
    peak_memory_bytes: int
    # The tool's last non-blank line of output (stdout and stderr): a failing tool's own
    # words, usually its error ("fastq-stats: error: ... Not a gzipped file").
    last_line: str | None = None
    # The kernel's OOM killer ended it (its memory cgroup's count went up); None: not SIGKILLed,
    # or the count could not be read (oomkills.py).
    oom_killed: bool | None = None
    # User + system CPU time of the tool and what it waited for (wait4's rusage): over its run
    # time, the vCPUs it kept busy, which right-sizing compares with what it asked for.
    cpu_seconds: float | None = None


LAST_LINE_MAX_CHARS = 400


class _LastLine:
    def __init__(self) -> None:
        self.text: str | None = None

    def see(self, line: bytes) -> None:
        text = " ".join(line.decode("utf-8", "replace").split())
        if text:
            self.text = text if len(text) <= LAST_LINE_MAX_CHARS else text[: LAST_LINE_MAX_CHARS - 3] + "..."


def pump_output(source: BinaryIO, log_file: BinaryIO, stdout: BinaryIO, last: _LastLine | None = None) -> None:
    """Line by line to the runner's stdout (CloudWatch) and to logs/tool.log.

    Neither sink may stop the draining: a tool blocked on a full pipe would hang the job, and
    the log file shares the scratch volume the tool may just have filled.
    """
    sinks = [log_file, stdout]
    for line in iter(lambda: source.readline(_LINE_LIMIT), b""):
        if last is not None:
            last.see(line)
        for sink in list(sinks):
            try:
                sink.write(line)
                if sink is stdout:
                    sink.flush()
            except (OSError, ValueError):
                sinks.remove(sink)
    try:
        log_file.flush()
    except OSError:
        pass


def signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_tool(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the tool's whole process group, SIGKILL if it outstays the grace period."""
    signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TOOL_STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        process.wait()
    signal_group(process.pid, signal.SIGKILL)


def run_tool(argv: list[str], *, cwd: Path, env: Mapping[str, str], log_path: Path,
             oom_kill_count: Callable[[], int | None] | None = None) -> ToolResult:
    stdout = sys.stdout.buffer
    oom_kill_count = oom_kill_count or oomkills.oom_kill_count
    oom_kills_before = oom_kill_count()
    with open(log_path, "ab") as log_file:
        try:
            # A session of its own, so that stopping the tool reaches the processes it started.
            process = subprocess.Popen(
                argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except FileNotFoundError:
            raise RunnerError(ExitCode.TOOL_NOT_FOUND, f"tool {argv[0]!r}: not found") from None
        except PermissionError:
            raise RunnerError(ExitCode.TOOL_NOT_EXECUTABLE, f"tool {argv[0]!r}: not executable") from None
        assert process.stdout is not None
        last = _LastLine()
        pump = threading.Thread(target=pump_output, args=(process.stdout, log_file, stdout, last), name="tool-output",
                                daemon=True)
        pump.start()
        try:
            # wait4, not Popen.wait: it also gives the tool's own peak RSS.
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            stop_tool(process)
            pump.join(timeout=2)
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        # A daemon the tool left behind would hold files open in the directory about to go.
        signal_group(process.pid, signal.SIGKILL)
        pump.join(timeout=5)
    code = process.returncode
    signal_name = signal.Signals(-code).name if code < 0 else None
    oom_killed = oomkills.killed_for_memory(oom_kills_before, oom_kill_count()) if code == -signal.SIGKILL else None
    return ToolResult(128 - code if code < 0 else code, signal_name, usage.ru_maxrss * 1024, last.text, oom_killed,
                      round(usage.ru_utime + usage.ru_stime, 3))
