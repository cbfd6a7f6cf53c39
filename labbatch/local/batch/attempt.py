"""One attempt of one job as a host process: start it, stream its output, stop it, say how it ended.

What a container gives a job, reproduced on the host:
- its own session (start_new_session), so a stop reaches what it started;
- stop = SIGTERM to the main process's group, then SIGKILL to everything after a grace
  period (ECS's 30 s by default), and everything left is killed when the main process exits,
  as a container's processes die with it;
- memory: a watchdog kills the biggest process once the attempt's anonymous resident memory
  exceeds the job's memory, as the cgroup OOM killer does, and the attempt is reported the way
  Batch reports an OOM kill (see `batch_reasons`). An RLIMIT_DATA backstop at twice the memory
  plus 1 GiB (set with prlimit right after the start, since preexec_fn is unsafe in a threaded
  launcher) keeps an allocation faster than the watchdog's 0.1 s from taking the machine; such a
  process sees a failed allocation instead (MemoryError), which Batch never shows. RLIMIT_AS is
  not used: it counts address space that Python, numpy and Go runtimes reserve but never touch,
  and would kill healthy tools.
"""

from __future__ import annotations

import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from labbatch.local import docker_runner
from labbatch.local import awslogs
from labbatch_contract import batch_reasons
from labbatch.local.docker_runner import ContainerSpec
from labbatch.local.batch.process_tree import ProcessInfo, ProcessTree, kill_process

log = logging.getLogger(__name__)

# Docker's log copier hands a log driver lines of at most its BufSize(), which awslogs sets to its
# event limit: a longer line reaches CloudWatch in pieces of this size.
MAX_LINE_BYTES = awslogs.MAX_EVENT_BYTES
EXIT_DRAIN_SECONDS = 1.0  # output still buffered when the main process exits
MIB = 1024 * 1024
# Host variables a container image would also define; AWS credentials and endpoints are not
# among them: those come only from the launcher's extra_env. PYTHONPATH: a launcher run from a
# source tree that way runs the host runner of that same tree, not whatever is installed.
HOST_VARIABLES = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR", "SSL_CERT_FILE",
                  "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PYTHONPATH")


def base_environment() -> dict[str, str]:
    """What the image would provide: PATH (the project's interpreter bin first, where the
    runner and demo tools are installed, even when the launcher's venv is not activated)."""
    env = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
    tools_bin = str(Path(sys.executable).parent)
    host_path = os.environ.get("PATH", os.defpath)
    env["PATH"] = host_path if tools_bin in host_path.split(os.pathsep) else tools_bin + os.pathsep + host_path
    return env


@dataclass(frozen=True)
class AttemptSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    memory_mib: int
    log_stream_name: str
    timeout_seconds: int | None = None
    # A spot reclaim planned for this attempt: seconds after it starts, and the instance id.
    reclaim_after_seconds: float | None = None
    reclaim_instance_id: str | None = None
    kill_grace_seconds: float = 30.0
    # Set: the attempt runs in this container (ContainerAttempt); None: `argv` runs on the host.
    container: ContainerSpec | None = None
    # Set (host TES tasks): this directory becomes the attempt's /tmp (private_tmp.PrivateTmpAttempt).
    private_tmp: Path | None = None


@dataclass(frozen=True)
class AttemptOutcome:
    started: bool  # False: the container never started (no exit code, Batch's CannotStart*)
    exit_code: int | None
    reason: str | None  # the container's reason (OOM, CannotStartContainerError)
    status_reason: str  # the attempt's statusReason
    stop_cause: str | None = None  # "timeout", "terminated", "reclaimed", or None for its own exit


@dataclass
class _Stop:
    cause: str
    status_reason: str
    kill_at: float


class RunningAttempt:
    """`start()`, then `follow()`; the monitor thread calls `tick()`; `on_exit` gets the outcome once."""

    def __init__(self, spec: AttemptSpec, *, on_lines: Callable[[str, list[str]], None],
                 on_exit: Callable[[AttemptOutcome], None]) -> None:
        self.spec = spec
        self._on_lines = on_lines
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._tree: ProcessTree | None = None
        self._stop: _Stop | None = None
        self._oom_killed = False
        self._sigkill_sent = False
        self._started_at = 0.0
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()

    # Starting

    def start(self) -> AttemptOutcome | None:
        """None once running; otherwise the outcome of a container that could not start."""
        executable = self.spec.argv[0]
        if shutil.which(executable, path=self.spec.env.get("PATH", os.defpath)) is None:
            return AttemptOutcome(False, None, batch_reasons.executable_not_found(executable),
                                  batch_reasons.TASK_FAILED_TO_START)
        try:
            process = subprocess.Popen(
                self.spec.argv, env=self.spec.env, cwd=self.spec.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            return AttemptOutcome(False, None, batch_reasons.cannot_start(executable, exc.strerror or str(exc)),
                                  batch_reasons.TASK_FAILED_TO_START)
        backstop = (max(2 * self.spec.memory_mib, self.spec.memory_mib + 1024)) * MIB
        try:
            resource.prlimit(process.pid, resource.RLIMIT_DATA, (backstop, backstop))
        except (OSError, ValueError):
            pass  # the watchdog still enforces the memory
        with self._lock:
            self._process = process
            self._tree = ProcessTree(process.pid)
            self._started_at = time.monotonic()
        return None

    def follow(self) -> None:
        """Starts reading its output and waiting for its end; separate from `start` so that the
        executor records RUNNING before `on_exit` can possibly report the end."""
        assert self._process is not None
        self._thread = threading.Thread(target=self._follow, name=f"attempt-{self._process.pid}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # Stopping

    def request_stop(self, cause: str, status_reason: str, grace_seconds: float | None = None) -> None:
        """SIGTERM now, SIGKILL to every process after the grace period. The first cause wins."""
        grace = self.spec.kill_grace_seconds if grace_seconds is None else grace_seconds
        with self._lock:
            if self._process is None or self.finished.is_set():
                return
            if self._stop is not None:
                return
            self._stop = _Stop(cause, status_reason, time.monotonic() + grace)
            tree = self._tree
        assert tree is not None
        tree.signal_root_group(signal.SIGTERM)

    def kill_now(self) -> None:
        with self._lock:
            tree = self._tree
            self._sigkill_sent = True
        if tree is not None:
            tree.signal_all(signal.SIGKILL)

    def tick(self, now: float, processes: dict[int, ProcessInfo]) -> None:
        """Deadlines (timeout, spot reclaim, grace period) and the memory watchdog."""
        if self.finished.is_set() or self._tree is None:
            return
        self._deadlines(now)
        used, largest = self._tree.memory_in_use(processes)
        if used > self.spec.memory_mib * MIB and largest is not None:
            log.info("attempt %s: %d MiB over its %d MiB: killing pid %d", self.spec.log_stream_name,
                     used // MIB, self.spec.memory_mib, largest.pid)
            self._oom_killed = True
            kill_process(largest)

    def _deadlines(self, now: float) -> None:
        running_for = now - self._started_at
        spec = self.spec
        if spec.timeout_seconds is not None and running_for >= spec.timeout_seconds:
            self.request_stop("timeout", batch_reasons.TIMEOUT)
        if spec.reclaim_after_seconds is not None and running_for >= spec.reclaim_after_seconds:
            self.request_stop("reclaimed", batch_reasons.host_terminated(spec.reclaim_instance_id or ""),
                              grace_seconds=min(spec.kill_grace_seconds, 2.0))
        stop = self._stop
        if stop is not None and now >= stop.kill_at and not self._sigkill_sent:
            self.kill_now()

    # Following

    def _follow(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        pending = b""
        exited_at: float | None = None
        try:
            while True:
                readable, _, _ = select.select([fd], [], [], 0.1)
                if readable:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    pending = self._emit(pending + chunk)
                if process.poll() is not None:
                    if exited_at is None:
                        exited_at = time.monotonic()
                        # The container is gone with its main process, and so is all it started.
                        assert self._tree is not None
                        self._tree.signal_all(signal.SIGKILL)
                    elif time.monotonic() - exited_at > EXIT_DRAIN_SECONDS:
                        break
        except Exception:  # noqa: BLE001 - a broken pipe must still end the attempt
            log.exception("attempt %s: reading its output failed", self.spec.log_stream_name)
        if pending:
            self._deliver([pending])
        returncode = process.wait()
        process.stdout.close()
        outcome = self._outcome(returncode)
        self.finished.set()
        self._on_exit(outcome)

    def _emit(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        pending = lines.pop()
        while len(pending) >= MAX_LINE_BYTES:  # a line too long for one event: whole events of it now
            lines.append(pending[:MAX_LINE_BYTES])
            pending = pending[MAX_LINE_BYTES:]
        if lines:
            self._deliver(lines)
        return pending

    def _deliver(self, raw_lines: list[bytes]) -> None:
        lines = []
        for raw in raw_lines:
            for offset in range(0, max(len(raw), 1), MAX_LINE_BYTES):
                lines.append(raw[offset:offset + MAX_LINE_BYTES].decode("utf-8", "replace").rstrip("\r"))
        try:
            self._on_lines(self.spec.log_stream_name, lines)
        except Exception:  # noqa: BLE001 - logging must never end a job
            log.exception("attempt %s: log sink failed", self.spec.log_stream_name)

    def _outcome(self, returncode: int) -> AttemptOutcome:
        exit_code = returncode if returncode >= 0 else 128 - returncode
        killed_by_someone_else = returncode == -signal.SIGKILL and not self._sigkill_sent and self._stop is None
        return self._compose(exit_code, self._oom_killed or killed_by_someone_else)

    def _compose(self, exit_code: int | None, oom_killed: bool) -> AttemptOutcome:
        stop = self._stop
        spec = self.spec
        if stop is None and spec.reclaim_after_seconds is not None:
            # It ended before its reclaim moment: the host vanished before its agent could
            # report the exit, which is how Batch then reports it (no exit code).
            return AttemptOutcome(True, None, None, batch_reasons.host_terminated(spec.reclaim_instance_id or ""),
                                  "reclaimed")
        if stop is not None and stop.cause == "reclaimed":
            return AttemptOutcome(True, None, None, stop.status_reason, "reclaimed")
        reason = batch_reasons.OUT_OF_MEMORY if oom_killed else None
        if stop is not None:
            return AttemptOutcome(True, exit_code, reason, stop.status_reason, stop.cause)
        return AttemptOutcome(True, exit_code, reason, batch_reasons.CONTAINER_EXITED)



MAX_REASON_CHARS = 1024


class ContainerAttempt(RunningAttempt):
    """One attempt as a container of a local engine: what ECS does with a Batch job's task.

    The engine enforces vCPUs and memory (an OOM kill is the engine's `OOMKilled`), a stop is
    `docker stop --time <grace>` (SIGTERM, SIGKILL after the grace period) and the end always
    removes the container, its anonymous volumes and the attempt's scratch directory. The
    followed process is `docker logs --follow`, which ends when the container does.
    """

    @property
    def container(self) -> ContainerSpec:
        assert self.spec.container is not None
        return self.spec.container

    def _engine(self, *args: str, timeout: float | None = docker_runner.ENGINE_TIMEOUT_SECONDS
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.container.engine, *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def _in_background(self, *args: str) -> None:
        def run() -> None:
            try:
                self._engine(*args)
            except Exception:  # noqa: BLE001 - the container may be gone already
                log.debug("attempt %s: %s failed", self.spec.log_stream_name, args[0], exc_info=True)
        threading.Thread(target=run, name=f"engine-{args[0]}", daemon=True).start()

    def _not_started(self, reason: str) -> AttemptOutcome:
        self._clean_up()
        return AttemptOutcome(False, None, reason[:MAX_REASON_CHARS], batch_reasons.TASK_FAILED_TO_START)

    def _clean_up(self) -> None:
        container = self.container
        docker_runner.remove_container(container.engine, container.name)
        shutil.rmtree(container.scratch, ignore_errors=True)

    def start(self) -> AttemptOutcome | None:
        container = self.container
        if container.refusal is not None:
            return self._not_started(container.refusal)
        try:
            if docker_runner.image_id(container.engine, container.image) is None:
                return self._not_started(docker_runner.image_missing_reason(container.image, container.engine))
            container.scratch.mkdir(parents=True, exist_ok=True)
            container.scratch.chmod(0o777)  # whatever user the image runs as writes its scratch
            created = subprocess.run(container.create_argv, capture_output=True, text=True,
                                     stdin=subprocess.DEVNULL, timeout=docker_runner.ENGINE_TIMEOUT_SECONDS)
            if created.returncode != 0:
                return self._not_started(batch_reasons.container_error(
                    batch_reasons.CANNOT_CREATE_CONTAINER, docker_runner.last_line(created.stderr)))
            started = self._engine("start", container.name)
            if started.returncode != 0:
                return self._not_started(batch_reasons.container_error(
                    batch_reasons.CANNOT_START_CONTAINER, docker_runner.last_line(started.stderr)))
            process = subprocess.Popen(
                [container.engine, "logs", "--follow", container.name], cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._not_started(batch_reasons.container_error(
                batch_reasons.CANNOT_START_CONTAINER, f"{container.engine}: {exc}"))
        with self._lock:
            self._process = process
            self._tree = ProcessTree(process.pid)
            self._started_at = time.monotonic()
        return None

    def request_stop(self, cause: str, status_reason: str, grace_seconds: float | None = None) -> None:
        grace = self.spec.kill_grace_seconds if grace_seconds is None else grace_seconds
        with self._lock:
            if self._process is None or self.finished.is_set() or self._stop is not None:
                return
            self._stop = _Stop(cause, status_reason, time.monotonic() + grace)
        self._in_background("stop", "--time", str(max(int(grace + 0.999), 0)), self.container.name)

    def kill_now(self) -> None:
        with self._lock:
            if self._sigkill_sent or self.finished.is_set():
                return
            self._sigkill_sent = True
        self._in_background("kill", self.container.name)

    def tick(self, now: float, processes: dict[int, ProcessInfo]) -> None:
        """Deadlines only: the engine enforces the memory."""
        if self.finished.is_set() or self._tree is None:
            return
        self._deadlines(now)

    def _outcome(self, returncode: int) -> AttemptOutcome:
        container = self.container
        try:
            # `logs --follow` ends with the container; wait makes sure it has stopped.
            waited = self._engine("wait", container.name, timeout=None)
            state = docker_runner.inspect_state(container.engine, container.name) or {}
            exit_code = state.get("ExitCode")
            if exit_code is None and waited.returncode == 0 and waited.stdout.strip().isdigit():
                exit_code = int(waited.stdout.strip())
            oom_killed = bool(state.get("OOMKilled"))
        finally:
            self._clean_up()
        return self._compose(exit_code, oom_killed)
