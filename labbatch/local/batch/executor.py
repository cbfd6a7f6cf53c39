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
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from labbatch.batch_layout import RUNNER_COMMAND, on_host
from labbatch_contract.references import CACHE_DIR_NAME
from labbatch_contract import batch_container, runner_env
from labbatch_contract import batch_reasons
from labbatch.local.batch.calls import BatchServerError, SubmitRequest
from labbatch.local.batch.attempt import (AttemptOutcome, AttemptSpec, ContainerAttempt, RunningAttempt,
                                          base_environment)
from labbatch.local.batch.delivery import SerialDelivery
from labbatch.local.batch.events import job_state_change
from labbatch.local.batch.jobs import QUEUED, STATUSES, TERMINAL, AttemptRecord, Job, log_options, now_ms
from labbatch.local.batch.models import (DEFAULT_ACCOUNT, DEFAULT_REGION, Arns, ComputeEnvironment, JobDefinition,
                                         JobQueue, coerce)
from labbatch.local.batch.private_tmp import RUNNER_SCRATCH, PrivateTmpAttempt
from labbatch.local.batch.process_tree import snapshot
from labbatch.local.batch.scheduler import Capacity
from labbatch.local.docker_runner import ContainerRunner, container_name

log = logging.getLogger(__name__)

StateChangeConsumer = Callable[[dict[str, Any]], None]
LogSink = Callable[[str, list[str]], None]

MONITOR_INTERVAL_SECONDS = 0.1
SCHEDULER_IDLE_SECONDS = 0.25
CLOSED_REASON = "Local mode stopped"


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
        if not 0.0 <= spot_interruption_rate <= 1.0:
            raise ValueError(f"spot_interruption_rate is {spot_interruption_rate} (allowed: 0-1)")
        self.arns = Arns(region=region, account=account)
        self._environments = {env.name: env for env in (coerce(ComputeEnvironment, e) for e in compute_environments)}
        self._queues = {queue.name: queue for queue in (coerce(JobQueue, q) for q in queues)}
        self._definitions: dict[str, dict[int, JobDefinition]] = {}
        for definition in (coerce(JobDefinition, d) for d in job_definitions):
            self._definitions.setdefault(definition.name, {})[definition.revision] = definition
        for queue in self._queues.values():
            unknown = [name for name in queue.compute_environments if name not in self._environments]
            if unknown:
                raise ValueError(f"job queue {queue.name!r}: unknown compute environment(s) {', '.join(unknown)}")
        self._capacity = Capacity(machine_vcpus=max_vcpus or os.cpu_count() or 1,
                                  machine_memory_mib=max_memory_mib or machine_memory_mib(),
                                  environments=self._environments)
        self._spot_rate = spot_interruption_rate
        self._reclaim_window = spot_reclaim_within_seconds
        self._random = random.Random(random_seed)
        self._on_state_change = on_state_change
        self._log_sink = log_sink
        self._extra_env = dict(extra_env or {})
        self._kill_grace = kill_grace_seconds
        # None: each attempt's command runs on this machine (the host runner in place of the mounted
        # one); a ContainerRunner: in a container of the job definition's image.
        self._container_runner = container_runner
        # Whether attempts may ask for GPUs: the engine has an NVIDIA runtime (docker_runner.nvidia_runtime).
        self.gives_gpus = gpus and container_runner is not None
        self._own_scratch = scratch_root is None
        self.scratch_root = Path(scratch_root) if scratch_root is not None else Path(
            tempfile.mkdtemp(prefix="labbatch-batch-scratch-"))

        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._jobs_by_queue: dict[str, list[Job]] = {name: [] for name in self._queues}
        self._runnable: dict[str, dict[str, Job]] = {name: {} for name in self._queues}
        self._active: dict[str, Job] = {}  # STARTING or RUNNING
        self._closing = False
        self._closed = False
        self._stop_threads = threading.Event()
        self._events = SerialDelivery("local-batch-events", self._deliver_events)
        self._logs = SerialDelivery("local-batch-logs", self._deliver_logs, batched=True)
        self._threads = [
            threading.Thread(target=self._schedule_forever, name="local-batch-scheduler", daemon=True),
            threading.Thread(target=self._monitor_forever, name="local-batch-monitor", daemon=True),
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
            self._closed = self._closing = True
            self._wake.notify_all()
        if self._started:
            # Launches already under way finish first (each sees the flag and stops at once),
            # so that no process starts after the list below is taken.
            self._threads[0].join()
        with self._lock:
            attempts = [job.running for job in self._active.values() if job.running is not None]
        for attempt in attempts:
            attempt.request_stop("terminated", CLOSED_REASON, grace_seconds=grace)
        deadline = time.monotonic() + grace
        for attempt in attempts:
            if not attempt.finished.wait(max(deadline - time.monotonic(), 0)):
                attempt.kill_now()
        for attempt in attempts:
            attempt.finished.wait(5)
        self._stop_threads.set()
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
        name = reference.split(":job-queue/", 1)[1] if reference.startswith("arn:") and ":job-queue/" in reference \
            else reference
        return self._queues.get(name)

    def find_definition(self, reference: str) -> JobDefinition | None:
        if reference.startswith("arn:"):
            if ":job-definition/" not in reference:
                return None
            reference = reference.split(":job-definition/", 1)[1]
        name, _, revision = reference.partition(":")
        revisions = self._definitions.get(name)
        if not revisions:
            return None
        if not revision:
            return revisions[max(revisions)]
        return revisions.get(int(revision)) if revision.isdigit() else None

    def register_definition(self, definition: JobDefinition) -> JobDefinition:
        """RegisterJobDefinition: the next revision of its name (the API registers TES task images)."""
        with self._lock:
            revisions = self._definitions.setdefault(definition.name, {})
            registered = dataclasses.replace(definition, revision=max(revisions, default=0) + 1)
            revisions[registered.revision] = registered
            return registered

    def has_job(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

    def describe_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            return [self._jobs[job_id].detail(self.arns) for job_id in job_ids if job_id in self._jobs]

    def queue_jobs(self, queue_name: str) -> list[Job]:
        """Top-level jobs of a queue (array children are listed by their parent), newest first."""
        with self._lock:
            return list(reversed(self._jobs_by_queue[queue_name]))

    def array_children(self, parent_id: str) -> list[Job] | None:
        with self._lock:
            parent = self._jobs.get(parent_id)
            if parent is None or not parent.is_array_parent:
                return None
            return list(parent.children)

    def summaries(self, jobs: list[Job]) -> list[dict[str, Any]]:
        with self._lock:
            return [job.summary() for job in jobs]

    def queue_details(self, wanted: list[str]) -> list[dict[str, Any]]:
        queues = [self.find_queue(ref) for ref in wanted] if wanted else list(self._queues.values())
        return [self._queue_detail(queue) for queue in queues if queue is not None]

    def definition_details(self, wanted: list[str], *, name: str | None, status: str | None) -> list[dict[str, Any]]:
        if status not in (None, "ACTIVE"):
            return []  # local definitions are never deregistered
        if wanted:
            found = [self.find_definition(ref) for ref in wanted]
            definitions = [d for d in found if d is not None]
        else:
            definitions = [d for revisions in self._definitions.values() for d in revisions.values()]
        if name:
            definitions = [d for d in definitions if d.name == name]
        return [self._definition_detail(d) for d in definitions]

    def environment_details(self, wanted: list[str]) -> list[dict[str, Any]]:
        names = [ref.split(":compute-environment/", 1)[-1] for ref in wanted] if wanted else list(self._environments)
        with self._lock:
            return [self._environment_detail(self._environments[n]) for n in names if n in self._environments]

    def has_environment(self, name: str) -> bool:
        return name in self._environments

    def set_queue_enabled(self, name: str, enabled: bool) -> None:
        """UpdateJobQueue's state: a disabled queue keeps its jobs, starts none and takes no new ones."""
        with self._lock:
            self._queues[name] = dataclasses.replace(self._queues[name], enabled=enabled)
            self._wake.notify_all()

    def set_environment_enabled(self, name: str, enabled: bool) -> None:
        """UpdateComputeEnvironment's state: a disabled environment finishes what it runs, starts nothing."""
        with self._lock:
            # The capacity holds this very dict, so placements see the change at once.
            self._environments[name] = dataclasses.replace(self._environments[name], enabled=enabled)
            self._wake.notify_all()

    # Job calls

    def submit(self, request: SubmitRequest) -> Job:
        with self._lock:
            if self._closing:
                raise BatchServerError("local Batch is shutting down")
            job_id = str(uuid.uuid4())
            job = self._new_job(job_id, request)
            self._jobs[job_id] = job
            self._jobs_by_queue[request.queue.name].append(job)
            self._emit(job)
            if request.array_size is None:
                self._make_runnable(job)
            else:
                job.array_size = request.array_size
                job.child_counts = {status: 0 for status in STATUSES}
                for index in range(request.array_size):
                    child = self._new_job(f"{job_id}:{index}", request)
                    child.array_index, child.parent, child.status = index, job, "PENDING"
                    job.children.append(child)
                    job.child_counts["PENDING"] += 1
                    self._jobs[child.job_id] = child
                    self._emit(child)
                job.child_counts_updated_at = now_ms()
                for child in job.children:
                    self._make_runnable(child)
                self._set_status(job, "PENDING")
            self._wake.notify_all()
            return job

    def cancel(self, job_id: str, reason: str) -> None:
        """Batch: cancels jobs still SUBMITTED, PENDING or RUNNABLE; does nothing to later ones."""
        with self._lock:
            job = self._jobs[job_id]
            targets = job.children if job.is_array_parent else [job]
            for target in targets:
                if target.status in QUEUED:
                    self._cancel_queued(target, reason)
            self._wake.notify_all()

    def terminate(self, job_id: str, reason: str) -> None:
        """Batch: stops STARTING and RUNNING jobs (FAILED), cancels those not yet started."""
        with self._lock:
            job = self._jobs[job_id]
            for target in (job.children if job.is_array_parent else [job]):
                if target.status in QUEUED:
                    self._cancel_queued(target, reason)
                elif target.status in ("STARTING", "RUNNING"):
                    target.is_terminated = True
                    target.stop_requested = ("terminated", reason)
                    if target.running is not None:
                        target.running.request_stop("terminated", reason)
            self._wake.notify_all()

    # State changes (lock held)

    def _new_job(self, job_id: str, request: SubmitRequest) -> Job:
        return Job(
            job_id=job_id, job_arn=self.arns.job(job_id), name=request.name, queue_name=request.queue.name,
            queue_arn=self.arns.job_queue(request.queue.name), definition=request.definition,
            definition_arn=self.arns.job_definition(request.definition.name, request.definition.revision),
            command=list(request.command), environment=dict(request.environment), vcpus=request.vcpus,
            memory_mib=request.memory_mib, retry=request.retry, timeout_seconds=request.timeout_seconds,
            parameters=dict(request.parameters), tags=dict(request.tags), container=request.container,
            propagate_tags=request.propagate_tags,
        )

    def _emit(self, job: Job) -> None:
        if self._on_state_change is not None:
            self._events.put(job_state_change(job.detail(self.arns), account=self.arns.account,
                                              region=self.arns.region))

    def _set_status(self, job: Job, status: str, reason: str | None = None, *, at: int | None = None) -> None:
        """`at`: when it happened (the last attempt's stop, which Batch reports as the job's too)."""
        previous = job.status
        job.status = status
        if reason is not None:
            job.status_reason = reason
        if status in TERMINAL:
            job.stopped_at = at if at is not None else now_ms()
        self._emit(job)
        parent = job.parent
        if parent is not None and previous != status:
            parent.child_counts[previous] -= 1
            parent.child_counts[status] += 1
            parent.child_counts_updated_at = now_ms()
            if status == "RUNNING" and parent.started_at is None:
                parent.started_at = job.started_at
            if status in TERMINAL and parent.child_counts["SUCCEEDED"] + parent.child_counts["FAILED"] == parent.array_size:
                if parent.child_counts["SUCCEEDED"] == parent.array_size:
                    self._set_status(parent, "SUCCEEDED")
                else:
                    self._set_status(parent, "FAILED", self._parent_failure_reason(parent))

    @staticmethod
    def _parent_failure_reason(parent: Job) -> str:
        stopped = [child for child in parent.children if child.is_cancelled or child.is_terminated]
        if parent.child_counts["FAILED"] and len(stopped) == parent.child_counts["FAILED"]:
            return stopped[0].status_reason or batch_reasons.ARRAY_CHILD_FAILED
        return batch_reasons.ARRAY_CHILD_FAILED

    def _make_runnable(self, job: Job) -> None:
        job.runnable_since = time.monotonic()
        self._runnable[job.queue_name][job.job_id] = job
        self._set_status(job, "RUNNABLE")

    def _cancel_queued(self, job: Job, reason: str) -> None:
        self._runnable[job.queue_name].pop(job.job_id, None)
        job.is_cancelled = True
        self._set_status(job, "FAILED", reason)

    # Scheduling

    def _schedule_forever(self) -> None:
        while not self._stop_threads.is_set():
            with self._wake:
                if self._closing:
                    return
                placements = self._place_runnable_jobs()
                if not placements:
                    self._wake.wait(SCHEDULER_IDLE_SECONDS)
                    continue
            for job, environment, spec in placements:
                self._launch(job, environment, spec)

    def _place_runnable_jobs(self) -> list[tuple[Job, ComputeEnvironment, AttemptSpec]]:
        placements = []
        for queue in sorted(self._queues.values(), key=lambda q: -q.priority):
            waiting = self._runnable[queue.name]
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
                self._active[job.job_id] = job
                spec = self._attempt_spec(job, environment)
                job.log_stream_name = spec.log_stream_name
                job.task_arn = self.arns.ecs_task(environment.name, spec.log_stream_name.rsplit("/", 1)[-1])
                self._set_status(job, "STARTING")
                placements.append((job, environment, spec))
        return placements

    def _reference_cache(self) -> Path:
        """The reference cache that every container attempt mounts (labbatch_runner.refcache)."""
        cache = self.scratch_root / CACHE_DIR_NAME
        if not cache.exists():
            cache.mkdir(parents=True, exist_ok=True)
            cache.chmod(0o777)  # whatever user the image runs as keeps its references there
        return cache

    def _apply_time_limit(self, queue: JobQueue, job: Job, blocked_reason: str) -> bool:
        for action in queue.state_time_limit_actions:
            if blocked_reason.startswith(action.reason) and \
                    time.monotonic() - job.runnable_since >= action.max_time_seconds:
                self._cancel_queued(job, batch_reasons.cancelled_by_time_limit(action.reason, action.max_time_seconds))
                return True
        return False

    def _attempt_spec(self, job: Job, environment: ComputeEnvironment) -> AttemptSpec:
        attempt_number = len(job.attempts) + 1
        task_id = uuid.uuid4().hex
        prefix = job.definition.log_stream_prefix or job.definition.name
        env = base_environment()
        env.update(self._extra_env)
        env.update(job.environment)
        env.update({
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt_number),
            "AWS_BATCH_CE_NAME": environment.name,
            "AWS_BATCH_JQ_NAME": job.queue_name,
            # The scratch volume's mount point in AWS; here the executor's own directory.
            runner_env.SCRATCH_DIR: str(self.scratch_root),
        })
        if job.array_index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
        reclaim_after = instance_id = None
        if environment.kind == "spot" and self._spot_rate > 0 and self._random.random() < self._spot_rate:
            reclaim_after = self._random.uniform(0.0, self._reclaim_window)
            instance_id = f"i-{self._random.getrandbits(68):017x}"[:19]
        argv = on_host(job.command)
        if argv[:1] == [RUNNER_COMMAND[0]] and (installed := Path(sys.executable).parent / RUNNER_COMMAND[0]).exists():
            # This install's runner, whatever PATH puts first: the tools a job runs follow PATH's
            # order (a workflow engine's env may come first), the runner must not.
            argv = [str(installed), *argv[1:]]
        container = private_tmp = None
        if self._container_runner is None and runner_env.TES_TASK in job.environment:
            # A TES task names absolute paths: on the host it gets a /tmp of its own, here on scratch.
            private_tmp = self.scratch_root / "attempts" / task_id
            env[runner_env.SCRATCH_DIR] = RUNNER_SCRATCH
            env.pop("TMPDIR", None)  # the host's may lie under the /tmp the namespace replaces
        if self._container_runner is not None:
            argv = list(job.command)
            # Findable from the ledger's job id (or Batch's), the array index and the attempt.
            name = container_name("labbatch", job.environment.get(runner_env.JOB_ID) or job.job_id.split(":")[0],
                                  "" if job.array_index is None else str(job.array_index),
                                  f"a{attempt_number}", task_id[:8])
            planned = job.container or batch_container.container_for(job.definition.request())
            context = batch_container.JobContext(job_id=job.job_id, attempt=attempt_number,
                                                 compute_environment=environment.name, job_queue=job.queue_name,
                                                 array_index=job.array_index)
            # What the ECS agent adds on an instance: Batch's variables; and what only this
            # machine needs: the emulator's endpoint, Region and credentials (AWS_* of the launcher).
            agent_env = {**{k: v for k, v in self._extra_env.items() if k.startswith("AWS_")},
                         **batch_container.batch_environment(context)}
            container = self._container_runner.spec(
                planned.with_environment(agent_env), scratch=self.scratch_root / "attempts" / task_id, name=name,
                reference_cache=None if runner_env.TES_TASK in job.environment else self._reference_cache(),
                labels={"labbatch.job-id": job.environment.get(runner_env.JOB_ID, ""),
                        "labbatch.batch-job-id": job.job_id, "labbatch.attempt": str(attempt_number),
                        "labbatch.log-stream": f"{prefix}/default/{task_id}"})
        return AttemptSpec(
            argv=argv, env=env, cwd=self.scratch_root, memory_mib=job.memory_mib, container=container,
            private_tmp=private_tmp,
            log_stream_name=f"{prefix}/default/{task_id}", timeout_seconds=job.timeout_seconds,
            reclaim_after_seconds=reclaim_after, reclaim_instance_id=instance_id,
            kill_grace_seconds=self._kill_grace,
        )

    def _launch(self, job: Job, environment: ComputeEnvironment, spec: AttemptSpec) -> None:
        kind = ContainerAttempt if spec.container is not None else (
            PrivateTmpAttempt if spec.private_tmp is not None else RunningAttempt)
        attempt = kind(spec, on_lines=self._queue_log_lines,
                       on_exit=lambda outcome: self._attempt_ended(job, outcome))
        with self._lock:
            stop = job.stop_requested
        if stop is not None or self._closing:
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
            self._set_status(job, "RUNNING")
            stop = job.stop_requested
        if stop is not None or self._closing:
            attempt.request_stop(*(stop or ("terminated", CLOSED_REASON)))
        attempt.follow()

    def _attempt_ended(self, job: Job, outcome: AttemptOutcome) -> None:
        with self._lock:
            self._capacity.release(job.compute_environment or "", job.vcpus, job.memory_mib)
            self._active.pop(job.job_id, None)
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
                self._set_status(job, "SUCCEEDED", outcome.status_reason, at=stopped)
            elif outcome.stop_cause in ("terminated", "timeout") or self._closing:
                # Batch never retries an attempt it stopped itself for a timeout or a TerminateJob.
                self._set_status(job, "FAILED", outcome.status_reason, at=stopped)
            elif job.retry.should_retry(attempts_made=len(job.attempts), status_reason=outcome.status_reason,
                                        reason=outcome.reason, exit_code=outcome.exit_code):
                job.status_reason = outcome.status_reason
                self._make_runnable(job)
            else:
                self._set_status(job, "FAILED", outcome.status_reason, at=stopped)
            self._wake.notify_all()

    # Watching running attempts

    def _monitor_forever(self) -> None:
        while not self._stop_threads.wait(MONITOR_INTERVAL_SECONDS):
            with self._lock:
                attempts = [job.running for job in self._active.values() if job.running is not None]
            if not attempts:
                continue
            processes = snapshot()
            now = time.monotonic()
            for attempt in attempts:
                try:
                    attempt.tick(now, processes)
                except Exception:  # noqa: BLE001 - one attempt's trouble must not stop the watch
                    log.exception("local Batch: watching %s failed", attempt.spec.log_stream_name)

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

    # Describe* shapes

    def _queue_detail(self, queue: JobQueue) -> dict[str, Any]:
        return {
            "jobQueueName": queue.name,
            "jobQueueArn": self.arns.job_queue(queue.name),
            "state": "ENABLED" if queue.enabled else "DISABLED",
            "status": "VALID",
            "statusReason": "JobQueue Healthy",
            "priority": queue.priority,
            "computeEnvironmentOrder": [{"order": position, "computeEnvironment": self.arns.compute_environment(name)}
                                        for position, name in enumerate(queue.compute_environments, start=1)],
            "jobQueueType": "ECS",
            "tags": {},
            "jobStateTimeLimitActions": [{"reason": a.reason, "state": a.state, "maxTimeSeconds": a.max_time_seconds,
                                          "action": a.action} for a in queue.state_time_limit_actions],
        }

    def _definition_detail(self, definition: JobDefinition) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "jobDefinitionName": definition.name,
            "jobDefinitionArn": self.arns.job_definition(definition.name, definition.revision),
            "revision": definition.revision,
            "status": "ACTIVE",
            "type": "container",
            "parameters": dict(definition.parameters),
            "retryStrategy": definition.retry.to_batch(),  # type: ignore[union-attr]
            "containerProperties": {
                "volumes": [], "mountPoints": [], "ulimits": [], "secrets": [],
                **definition.container_properties(),
                "logConfiguration": {"logDriver": "awslogs", "options": log_options(definition)},
            },
            "tags": {},
            "propagateTags": False,
            "platformCapabilities": ["EC2"],
            "containerOrchestrationType": "ECS",
        }
        if definition.timeout_seconds is not None:
            detail["timeout"] = {"attemptDurationSeconds": definition.timeout_seconds}
        return detail

    def _environment_detail(self, environment: ComputeEnvironment) -> dict[str, Any]:
        spot = environment.kind == "spot"
        return {
            "computeEnvironmentName": environment.name,
            "computeEnvironmentArn": self.arns.compute_environment(environment.name),
            "ecsClusterArn": self.arns.ecs_cluster(environment.name),
            "tags": {},
            "type": "MANAGED",
            "state": "ENABLED" if environment.enabled else "DISABLED",
            "status": "VALID",
            "statusReason": "ComputeEnvironment Healthy",
            "computeResources": {
                "type": "SPOT" if spot else "EC2",
                "allocationStrategy": environment.allocation_strategy
                or ("SPOT_PRICE_CAPACITY_OPTIMIZED" if spot else "BEST_FIT_PROGRESSIVE"),
                "minvCpus": 0,
                # Every environment is this machine here: it can never run more than the machine has.
                "maxvCpus": min(environment.max_vcpus, self._capacity.machine_vcpus)
                if environment.max_vcpus is not None else self._capacity.machine_vcpus,
                "desiredvCpus": self._capacity.used_by_environment.get(environment.name, 0),
                "instanceTypes": list(environment.instance_types),
                "subnets": [],
                "securityGroupIds": [],
            },
            "containerOrchestrationType": "ECS",
        }
