"""Jobs a workflow engine submitted to the lab's queues itself (Nextflow's awsbatch executor):
the API never saw them, so their first event makes their ledger record, and from then on they
are LabBatch jobs like any other: `labbatch list`, `why`, failure classes, cost by tag.

Only jobs on this lab's own queues are recorded (the EventBridge rule already matches only those;
the check here keeps a misrouted event out). No recovery: the engine retries its own tasks
(Nextflow's errorStrategy, and Batch's retry on spot reclaims through maxSpotAttempts), and a
task LabBatch resubmitted would be one the engine never hears of.
"""

from __future__ import annotations

from typing import Any

from labbatch_status.batch_events import StatusUpdate
from labbatch_contract.ledger import new_job_record
from labbatch_contract.settings import LabSettings

SUBMITTED_BY = "nextflow"  # Batch events do not carry the IAM caller that submitted the job


def engine_record(settings: LabSettings, update: StatusUpdate) -> dict[str, Any] | None:
    """The ledger record for an engine's job, or None when its queue is not this lab's."""
    job = update.engine_job
    assert job is not None
    queue_name = (update.job_queue or "").rsplit("/", 1)[-1]
    # Any pool's queue is the lab's (each pool has its spot and on-demand queue).
    queue = next((key for pool in settings.pool_map().values() for key, name in pool.queues.items()
                  if name == queue_name), None)
    if queue is None:
        return None
    return new_job_record(
        job_id=update.ledger_job_id, lab=settings.lab, pipeline=f"{job.engine}:{job.job_definition}", queue=queue,
        job_queue=queue_name, job_definition=job.job_definition, vcpus=job.vcpus or 1,
        memory_mib=job.memory_mib or 0, output_prefix=(job.work_dir + "/") if job.work_dir else "",
        status_reason=f"submitted by {job.engine} directly to AWS Batch", created_at=job.created_at,
        name=update.job_name, submitted_by=SUBMITTED_BY, batch_job_id=update.batch_job_id,
        engine=job.engine, tags=job.tags or None, array_size=update.array_size)
