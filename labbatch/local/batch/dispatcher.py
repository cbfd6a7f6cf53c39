"""The running side of local Batch: places runnable jobs on the machine's capacity, by queue
priority and FIFO within a queue (a head no environment can ever hold blocks its queue until a
state time limit cancels it), launches each attempt, watches the running ones, and ends each
attempt as Batch would: SUCCEEDED, FAILED, or RUNNABLE again by the retry strategy.

Its two loops are the executor's threads; everything they touch is shared with the executor
under one lock (the executor's), which the dispatcher takes but does not own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from labbatch_contract import batch_reasons
from labbatch.local.batch.attempt import AttemptOutcome, AttemptSpec, ContainerAttempt, RunningAttempt
from labbatch.local.batch.attempt_plan import AttemptPlanner
from labbatch.local.batch.job_book import JobBook
from labbatch.local.batch.jobs import AttemptRecord, Job, now_ms
from labbatch.local.batch.models import Arns, ComputeEnvironment, JobQueue
from labbatch.local.batch.private_tmp import PrivateTmpAttempt
from labbatch.local.batch.process_tree import snapshot
from labbatch.local.batch.registry import Registry
from labbatch.local.batch.scheduler import Capacity

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 0.1
SCHEDULER_IDLE_SECONDS = 0.25
CLOSED_REASON = "Local mode stopped"


class Dispatcher:
    """`wake`: the condition on the executor's `lock` that any change which may let a job start
    notifies. `on_lines(stream, lines)`: each attempt's output. `closing` is set (under the lock)
    when the executor closes; `stopped` ends both loops."""

    def __init__(self, *, lock: threading.RLock, wake: threading.Condition, arns: Arns, registry: Registry,
                 book: JobBook, capacity: Capacity, planner: AttemptPlanner,
                 on_lines: Callable[[str, list[str]], None]) -> None:
        self._lock = lock
        self._wake = wake
        self.arns = arns
        self._registry = registry
        self._book = book
        self._capacity = capacity
        self._planner = planner
        self._on_lines = on_lines
        self.active: dict[str, Job] = {}  # STARTING or RUNNING
        self.closing = False
        self.stopped = threading.Event()

    def running_attempts(self) -> list[RunningAttempt]:
        """The attempts running now (lock held)."""
        return [job.running for job in self.active.values() if job.running is not None]

    def schedule_forever(self) -> None:
        while not self.stopped.is_set():
            with self._wake:
                if self.closing:
                    return
                placements = self._place_runnable_jobs()
                if not placements:
                    self._wake.wait(SCHEDULER_IDLE_SECONDS)
                    continue
            for job, environment, spec in placements:
                self._launch(job, environment, spec)

    def _place_runnable_jobs(self) -> list[tuple[Job, ComputeEnvironment, AttemptSpec]]:
        placements = []
        for queue in sorted(self._registry.queues.values(), key=lambda q: -q.priority):
            waiting = self._book.runnable[queue.name]
            while waiting and queue.enabled:
                job = next(iter(waiting.values()))
                blocked = self._capacity.never_placeable(queue, job.vcpus, job.memory_mib)
                if blocked is not None:
                    # Batch holds the head of the queue here, and says why, until a time limit acts.
                    job.status_reason = blocked
                    if not self._apply_time_limit(queue, job, blocked):
                        break
                    continue
                environment = self._capacity.place(queue, job.vcpus, job.memory_mib)
                if environment is None:
                    break
                del waiting[job.job_id]
                self._capacity.reserve(environment.name, job.vcpus, job.memory_mib)
                job.compute_environment = environment.name
                job.status_reason = None
                self.active[job.job_id] = job
                spec = self._planner.spec(job, environment)
                job.log_stream_name = spec.log_stream_name
                job.task_arn = self.arns.ecs_task(environment.name, spec.log_stream_name.rsplit("/", 1)[-1])
                self._book.set_status(job, "STARTING")
                placements.append((job, environment, spec))
        return placements

    def _apply_time_limit(self, queue: JobQueue, job: Job, blocked_reason: str) -> bool:
        for action in queue.state_time_limit_actions:
            if blocked_reason.startswith(action.reason) and \
                    time.monotonic() - job.runnable_since >= action.max_time_seconds:
                self._book.cancel_queued(job, batch_reasons.cancelled_by_time_limit(action.reason,
                                                                                   action.max_time_seconds))
                return True
        return False

    def _launch(self, job: Job, environment: ComputeEnvironment, spec: AttemptSpec) -> None:
        kind = ContainerAttempt if spec.container is not None else (
            PrivateTmpAttempt if spec.private_tmp is not None else RunningAttempt)
        attempt = kind(spec, on_lines=self._on_lines,
                       on_exit=lambda outcome: self._attempt_ended(job, outcome))
        with self._lock:
            stop = job.stop_requested
        if stop is not None or self.closing:
            cause, reason = stop or ("terminated", CLOSED_REASON)
            self._attempt_ended(job, AttemptOutcome(False, None, None, reason, cause))
            return
        not_started = attempt.start()
        if not_started is not None:
            self._attempt_ended(job, not_started)
            return
        with self._lock:
            job.running = attempt
            job.started_at = job.attempt_started_at = now_ms()
            self._book.set_status(job, "RUNNING")
            stop = job.stop_requested
        if stop is not None or self.closing:
            attempt.request_stop(*(stop or ("terminated", CLOSED_REASON)))
        attempt.follow()

    def _attempt_ended(self, job: Job, outcome: AttemptOutcome) -> None:
        with self._lock:
            self._capacity.release(job.compute_environment or "", job.vcpus, job.memory_mib)
            self.active.pop(job.job_id, None)
            job.running = None
            job.stop_requested = None
            stopped = now_ms()
            job.attempts.append(AttemptRecord(
                started_at=job.attempt_started_at if outcome.started else None,
                stopped_at=stopped,
                status_reason=outcome.status_reason,
                exit_code=outcome.exit_code,
                reason=outcome.reason,
                log_stream_name=job.log_stream_name if outcome.started else None,
                task_arn=job.task_arn,
            ))
            job.attempt_started_at = None
            if outcome.started and outcome.stop_cause is None and outcome.exit_code == 0:
                self._book.set_status(job, "SUCCEEDED", outcome.status_reason, at=stopped)
            elif outcome.stop_cause in ("terminated", "timeout") or self.closing:
                # Batch never retries an attempt it stopped itself for a timeout or a TerminateJob.
                self._book.set_status(job, "FAILED", outcome.status_reason, at=stopped)
            elif job.retry.should_retry(attempts_made=len(job.attempts), status_reason=outcome.status_reason,
                                        reason=outcome.reason, exit_code=outcome.exit_code):
                job.status_reason = outcome.status_reason
                self._book.make_runnable(job)
            else:
                self._book.set_status(job, "FAILED", outcome.status_reason, at=stopped)
            self._wake.notify_all()

    def monitor_forever(self) -> None:
        while not self.stopped.wait(MONITOR_INTERVAL_SECONDS):
            with self._lock:
                attempts = self.running_attempts()
            if not attempts:
                continue
            processes = snapshot()
            now = time.monotonic()
            for attempt in attempts:
                try:
                    attempt.tick(now, processes)
                except Exception:  # noqa: BLE001 - one attempt's trouble must not stop the watch
                    log.exception("local Batch: watching %s failed", attempt.spec.log_stream_name)
