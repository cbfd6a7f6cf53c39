"""Every job local Batch holds and the one way its status changes: submission (an array's
children fanned out from PENDING), RUNNABLE, cancellation, and each status change told as a
"Batch Job State Change" event, with an array parent following its children to its end.

The book is mutated only under the executor's lock; it takes no lock of its own.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from labbatch_contract import batch_reasons
from labbatch.local.batch.calls import SubmitRequest
from labbatch.local.batch.events import job_state_change
from labbatch.local.batch.jobs import STATUSES, TERMINAL, Job, now_ms
from labbatch.local.batch.models import Arns

EventSink = Callable[[dict[str, Any]], None]


class JobBook:
    """`publish(event)`: each state change's event, in order (None: nobody listens)."""

    def __init__(self, arns: Arns, queue_names: list[str], publish: EventSink | None) -> None:
        self.arns = arns
        self._publish = publish
        self.jobs: dict[str, Job] = {}
        self.jobs_by_queue: dict[str, list[Job]] = {name: [] for name in queue_names}
        # Per queue, in FIFO order: what the scheduler may place.
        self.runnable: dict[str, dict[str, Job]] = {name: {} for name in queue_names}

    def add(self, job_id: str, request: SubmitRequest) -> Job:
        job = self._new_job(job_id, request)
        self.jobs[job_id] = job
        self.jobs_by_queue[request.queue.name].append(job)
        self._emit(job)
        if request.array_size is None:
            self.make_runnable(job)
        else:
            job.array_size = request.array_size
            job.child_counts = {status: 0 for status in STATUSES}
            for index in range(request.array_size):
                child = self._new_job(f"{job_id}:{index}", request)
                child.array_index, child.parent, child.status = index, job, "PENDING"
                job.children.append(child)
                job.child_counts["PENDING"] += 1
                self.jobs[child.job_id] = child
                self._emit(child)
            job.child_counts_updated_at = now_ms()
            for child in job.children:
                self.make_runnable(child)
            self.set_status(job, "PENDING")
        return job

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
        if self._publish is not None:
            self._publish(job_state_change(job.detail(self.arns), account=self.arns.account,
                                           region=self.arns.region))

    def set_status(self, job: Job, status: str, reason: str | None = None, *, at: int | None = None) -> None:
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
                    self.set_status(parent, "SUCCEEDED")
                else:
                    self.set_status(parent, "FAILED", _parent_failure_reason(parent))

    def make_runnable(self, job: Job) -> None:
        job.runnable_since = time.monotonic()
        self.runnable[job.queue_name][job.job_id] = job
        self.set_status(job, "RUNNABLE")

    def cancel_queued(self, job: Job, reason: str) -> None:
        self.runnable[job.queue_name].pop(job.job_id, None)
        job.is_cancelled = True
        self.set_status(job, "FAILED", reason)


def _parent_failure_reason(parent: Job) -> str:
    stopped = [child for child in parent.children if child.is_cancelled or child.is_terminated]
    if parent.child_counts["FAILED"] and len(stopped) == parent.child_counts["FAILED"]:
        return stopped[0].status_reason or batch_reasons.ARRAY_CHILD_FAILED
    return batch_reasons.ARRAY_CHILD_FAILED
