"""Local mode's AWS Batch: the job calls served on loopback, every attempt a real process here.

The API handler only talks to a boto3 `batch` client; pointed here with
`AWS_ENDPOINT_URL_BATCH`, it cannot tell this from Batch. Queues, compute environments and job
definitions are registered from the lab config and held here too (rather than in moto), so one
place validates submissions against them and answers the Describe* calls that explain a wait.

    batch = LocalBatch(compute_environments=[...], queues=[...], job_definitions=[...],
                       on_state_change=status_handler, log_sink=put_log_events,
                       extra_env={"AWS_ENDPOINT_URL": moto_url, ...})
    with LocalBatchService(batch) as service:            # service.py: the HTTP endpoint
        os.environ["AWS_ENDPOINT_URL_BATCH"] = service.endpoint_url

Behaviour follows AWS Batch (see batch_reasons for its words): states SUBMITTED -> RUNNABLE ->
STARTING -> RUNNING -> SUCCEEDED | FAILED (array parents SUBMITTED -> PENDING -> SUCCEEDED |
FAILED, children from PENDING); queues by priority, FIFO within a queue, a head that no
compute environment can ever hold blocks its queue until its queue's state time limit cancels
it; retries by the retry strategy; timeouts and terminations are not retried.

This module is LocalBatch, the one face of it: its calls, under one lock, and its life cycle
(start, close, delivery of events and log lines to the consumers given). What it puts together
lives beside it: registry.py (what is registered), job_book.py (the jobs and each status change),
dispatcher.py (the scheduler and monitor threads: placing jobs, each attempt from launch to end),
scheduler.py (capacity), attempt_plan.py and spot.py (how an attempt will run), attempt.py
(running it) and describe.py (the Describe* shapes).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from labbatch.local.batch import describe
from labbatch.local.batch.attempt_plan import AttemptPlanner
from labbatch.local.batch.calls import BatchServerError, SubmitRequest
from labbatch.local.batch.delivery import SerialDelivery
from labbatch.local.batch.dispatcher import CLOSED_REASON, Dispatcher
from labbatch.local.batch.job_book import JobBook
from labbatch.local.batch.jobs import QUEUED, Job
from labbatch.local.batch.models import (DEFAULT_ACCOUNT, DEFAULT_REGION, Arns, ComputeEnvironment, JobDefinition,
                                         JobQueue)
from labbatch.local.batch.registry import Registry
from labbatch.local.batch.scheduler import Capacity
from labbatch.local.batch.spot import SpotInterruptions
from labbatch.local.docker_runner import ContainerRunner

StateChangeConsumer = Callable[[dict[str, Any]], None]
LogSink = Callable[[str, list[str]], None]


def machine_memory_mib() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


class LocalBatch:
    """AWS Batch on this machine. Construct, then `start()` (or use `with`); `close()` ends all.

    - `max_vcpus`, `max_memory_mib`: the machine's share all jobs together may use at once
      (default: all cores, all memory).
    - `spot_interruption_rate`: the share (0-1) of attempts placed on a spot compute environment
      that are reclaimed: killed at a random moment within their first
      `spot_reclaim_within_seconds` of running, or, when they end sooner, reported as reclaimed
      at their end (the host vanished before its agent reported the exit), so the rate holds
      exactly whatever the jobs' lengths. `random_seed` makes the choice repeatable.
    - `on_state_change(event)`: every status change, as EventBridge's "Batch Job State Change"
      event, in order, from one thread. `log_sink(log_stream_name, lines)`: each attempt's
      stdout and stderr lines, from another.
    - `extra_env`: the launcher's variables every job gets (AWS endpoints, credentials, Region).
    - `kill_grace_seconds`: between SIGTERM and SIGKILL when an attempt is stopped (ECS: 30).
    - `scratch_root`: the jobs' scratch volume (LABBATCH_SCRATCH_DIR); created if missing,
      removed by `close()`. Default: a new temporary directory.
    """

    def __init__(
        self,
        *,
        compute_environments: Iterable[ComputeEnvironment | Mapping[str, Any]],
        queues: Iterable[JobQueue | Mapping[str, Any]],
        job_definitions: Iterable[JobDefinition | Mapping[str, Any]],
        scratch_root: Path | str | None = None,
        max_vcpus: int | None = None,
        max_memory_mib: int | None = None,
        spot_interruption_rate: float = 0.0,
        spot_reclaim_within_seconds: float = 2.0,
        random_seed: int | None = None,
        on_state_change: StateChangeConsumer | None = None,
        log_sink: LogSink | None = None,
        extra_env: Mapping[str, str] | None = None,
        kill_grace_seconds: float = 30.0,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        container_runner: ContainerRunner | None = None,
        gpus: bool = False,
    ) -> None:
        spot = SpotInterruptions(spot_interruption_rate, spot_reclaim_within_seconds, random_seed)
        self.arns = Arns(region=region, account=account)
        self._registry = Registry(compute_environments, queues, job_definitions)
        self._capacity = Capacity(machine_vcpus=max_vcpus or os.cpu_count() or 1,
                                  machine_memory_mib=max_memory_mib or machine_memory_mib(),
                                  environments=self._registry.environments)
        self._on_state_change = on_state_change
        self._log_sink = log_sink
        self._kill_grace = kill_grace_seconds
        # Whether attempts may ask for GPUs: the engine has an NVIDIA runtime (docker_runner.nvidia_runtime).
        self.gives_gpus = gpus and container_runner is not None
        self._own_scratch = scratch_root is None
        self.scratch_root = Path(scratch_root) if scratch_root is not None else Path(
            tempfile.mkdtemp(prefix="labbatch-batch-scratch-"))
        self._planner = AttemptPlanner(scratch_root=self.scratch_root, extra_env=extra_env or {},
                                       kill_grace_seconds=kill_grace_seconds, container_runner=container_runner,
                                       spot=spot)

        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._events = SerialDelivery("local-batch-events", self._deliver_events)
        self._logs = SerialDelivery("local-batch-logs", self._deliver_logs, batched=True)
        self._book = JobBook(self.arns, list(self._registry.queues),
                             self._events.put if on_state_change is not None else None)
        self._dispatcher = Dispatcher(lock=self._lock, wake=self._wake, arns=self.arns, registry=self._registry,
                                      book=self._book, capacity=self._capacity, planner=self._planner,
                                      on_lines=self._queue_log_lines)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._dispatcher.schedule_forever, name="local-batch-scheduler", daemon=True),
            threading.Thread(target=self._dispatcher.monitor_forever, name="local-batch-monitor", daemon=True),
        ]
        self._started = False

    # Life cycle

    def start(self) -> LocalBatch:
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        for thread in self._threads:
            thread.start()
        self._started = True
        return self

    def __enter__(self) -> LocalBatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, grace_seconds: float | None = None) -> None:
        """Stops scheduling, stops every running attempt (SIGTERM, SIGKILL after the grace
        period), waits for them, delivers what is pending and removes the scratch root."""
        grace = self._kill_grace if grace_seconds is None else grace_seconds
        with self._lock:
            if self._closed:
                return
            self._closed = self._dispatcher.closing = True
            self._wake.notify_all()
        if self._started:
            # Launches already under way finish first (each sees the flag and stops at once),
            # so that no process starts after the list below is taken.
            self._threads[0].join()
        with self._lock:
            attempts = self._dispatcher.running_attempts()
        for attempt in attempts:
            attempt.request_stop("terminated", CLOSED_REASON, grace_seconds=grace)
        deadline = time.monotonic() + grace
        for attempt in attempts:
            if not attempt.finished.wait(max(deadline - time.monotonic(), 0)):
                attempt.kill_now()
        for attempt in attempts:
            attempt.finished.wait(5)
        self._dispatcher.stopped.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(5)
        self._events.close(timeout=5)
        self._logs.close(timeout=5)
        shutil.rmtree(self.scratch_root, ignore_errors=True)

    def wait_for_events(self, timeout: float = 10.0) -> bool:
        """True once every state change so far has reached `on_state_change` (tests, demo)."""
        return self._events.wait_idle(timeout)

    # Lookups (also used by BatchApi)

    def find_queue(self, reference: str) -> JobQueue | None:
        return self._registry.find_queue(reference)

    def find_definition(self, reference: str) -> JobDefinition | None:
        return self._registry.find_definition(reference)

    def register_definition(self, definition: JobDefinition) -> JobDefinition:
        """RegisterJobDefinition: the next revision of its name (the API registers TES task images)."""
        with self._lock:
            return self._registry.register_definition(definition)

    def has_job(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._book.jobs

    def describe_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            jobs = self._book.jobs
            return [jobs[job_id].detail(self.arns) for job_id in job_ids if job_id in jobs]

    def queue_jobs(self, queue_name: str) -> list[Job]:
        """Top-level jobs of a queue (array children are listed by their parent), newest first."""
        with self._lock:
            return list(reversed(self._book.jobs_by_queue[queue_name]))

    def array_children(self, parent_id: str) -> list[Job] | None:
        with self._lock:
            parent = self._book.jobs.get(parent_id)
            if parent is None or not parent.is_array_parent:
                return None
            return list(parent.children)

    def summaries(self, jobs: list[Job]) -> list[dict[str, Any]]:
        with self._lock:
            return [job.summary() for job in jobs]

    def queue_details(self, wanted: list[str]) -> list[dict[str, Any]]:
        return [describe.queue_detail(queue, self.arns) for queue in self._registry.queues_named(wanted)]

    def definition_details(self, wanted: list[str], *, name: str | None, status: str | None) -> list[dict[str, Any]]:
        if status not in (None, "ACTIVE"):
            return []  # local definitions are never deregistered
        return [describe.definition_detail(d, self.arns) for d in self._registry.definitions_matching(wanted, name)]

    def environment_details(self, wanted: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            return [describe.environment_detail(environment, self.arns, self._capacity)
                    for environment in self._registry.environments_named(wanted)]

    def has_environment(self, name: str) -> bool:
        return name in self._registry.environments

    def set_queue_enabled(self, name: str, enabled: bool) -> None:
        """UpdateJobQueue's state: a disabled queue keeps its jobs, starts none and takes no new ones."""
        with self._lock:
            self._registry.set_queue_enabled(name, enabled)
            self._wake.notify_all()

    def set_environment_enabled(self, name: str, enabled: bool) -> None:
        """UpdateComputeEnvironment's state: a disabled environment finishes what it runs, starts nothing."""
        with self._lock:
            # The capacity holds the registry's very dict, so placements see the change at once.
            self._registry.set_environment_enabled(name, enabled)
            self._wake.notify_all()

    # Job calls

    def submit(self, request: SubmitRequest) -> Job:
        with self._lock:
            if self._dispatcher.closing:
                raise BatchServerError("local Batch is shutting down")
            job = self._book.add(str(uuid.uuid4()), request)
            self._wake.notify_all()
            return job

    def cancel(self, job_id: str, reason: str) -> None:
        """Batch: cancels jobs still SUBMITTED, PENDING or RUNNABLE; does nothing to later ones."""
        with self._lock:
            job = self._book.jobs[job_id]
            targets = job.children if job.is_array_parent else [job]
            for target in targets:
                if target.status in QUEUED:
                    self._book.cancel_queued(target, reason)
            self._wake.notify_all()

    def terminate(self, job_id: str, reason: str) -> None:
        """Batch: stops STARTING and RUNNING jobs (FAILED), cancels those not yet started."""
        with self._lock:
            job = self._book.jobs[job_id]
            for target in (job.children if job.is_array_parent else [job]):
                if target.status in QUEUED:
                    self._book.cancel_queued(target, reason)
                elif target.status in ("STARTING", "RUNNING"):
                    target.is_terminated = True
                    target.stop_requested = ("terminated", reason)
                    if target.running is not None:
                        target.running.request_stop("terminated", reason)
            self._wake.notify_all()

    # Delivery

    def _deliver_events(self, events: list[dict[str, Any]]) -> None:
        assert self._on_state_change is not None
        for event in events:
            self._on_state_change(event)

    def _queue_log_lines(self, stream: str, lines: list[str]) -> None:
        if self._log_sink is not None:
            self._logs.put((stream, lines))

    def _deliver_logs(self, batches: list[tuple[str, list[str]]]) -> None:
        assert self._log_sink is not None
        merged: list[tuple[str, list[str]]] = []
        for stream, lines in batches:
            if merged and merged[-1][0] == stream:
                merged[-1][1].extend(lines)
            else:
                merged.append((stream, list(lines)))
        for stream, lines in merged:
            self._log_sink(stream, lines)
