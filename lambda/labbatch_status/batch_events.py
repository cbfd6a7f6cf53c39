"""Reading AWS Batch "Job State Change" events into the ledger update they imply.

Records are found by the LABBATCH_JOB_ID the API puts in every job's environment: the
event's `detail.container.environment` carries it (array children inherit it), so no
second lookup table is needed and a record whose completion write was lost after SubmitJob
still gets found.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from labbatch_status.failure_classes import AttemptEvidence
from labbatch_contract import runner_env
from labbatch_contract.ids import job_id_from
from labbatch_contract.names import NEXTFLOW_JOB_DEFINITION_PREFIX
from labbatch_contract.ledger import FINAL_STATUSES, progress_of

JOB_ID_ENV = runner_env.JOB_ID


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EnvironmentVariable(_Event):
    name: str
    value: str = ""


class LogConfiguration(_Event):
    logDriver: str | None = None
    options: dict[str, str] = Field(default_factory=dict)


class ResourceRequirement(_Event):
    type: str
    value: str


class Container(_Event):
    environment: list[EnvironmentVariable] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    vcpus: int | None = None
    memory: int | None = None
    resourceRequirements: list[ResourceRequirement] = Field(default_factory=list)
    exitCode: int | None = None
    reason: str | None = None
    logStreamName: str | None = None
    logConfiguration: LogConfiguration | None = None


class AttemptDetail(_Event):
    container: Container = Field(default_factory=Container)
    startedAt: int | None = None
    stoppedAt: int | None = None
    statusReason: str | None = None


class ArrayProperties(_Event):
    index: int | None = None
    size: int | None = None
    statusSummary: dict[str, int] | None = None


class JobDetail(_Event):
    jobId: str
    jobName: str | None = None
    jobQueue: str | None = None
    jobDefinition: str | None = None
    createdAt: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    status: str
    statusReason: str | None = None
    attempts: list[AttemptDetail] = Field(default_factory=list)
    startedAt: int | None = None
    stoppedAt: int | None = None
    container: Container = Field(default_factory=Container)
    arrayProperties: ArrayProperties | None = None


class BatchStateChange(_Event):
    source: str
    detail_type: str = Field(alias="detail-type")
    time: str | None = None
    detail: JobDetail


@dataclass(frozen=True)
class StatusUpdate:
    ledger_job_id: str
    batch_job_id: str  # for a child, its parent's id
    status: str
    progress: int
    event_time: str | None
    status_reason: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    started_at: str | None = None
    stopped_at: str | None = None
    log: dict[str, str] | None = None
    child_index: int | None = None
    array_size: int | None = None
    status_summary: dict[str, int] | None = None
    # What classifying a failure and recovering from it need (see failure_classes, recovery).
    environment: dict[str, str] = field(default_factory=dict)
    job_name: str | None = None
    job_queue: str | None = None
    evidence: list[AttemptEvidence] = field(default_factory=list)
    # Set by the handler for FAILED jobs, from the evidence (and the record, and the manifest).
    failure: str | None = None
    # A FAILED array child: what its ledger item keeps for GET /jobs/{id} (sample, reason,
    # exit_code, log, manifest, stopped_at; see labbatch_contract.ledger).
    child_detail: dict[str, Any] | None = None
    # A job a workflow engine submitted itself (no LABBATCH_JOB_ID): what its ledger record is
    # made of when the first event arrives (engine_jobs.py).
    engine_job: EngineJob | None = None
    # What the job asked for (the container's resourceRequirements) and when Batch created it.
    vcpus: int | None = None
    memory_mib: int | None = None
    created_at: str | None = None
    # A final job's or child's measured figures per attempt (labbatch_contract.measures).
    figures: list[dict[str, Any]] | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class EngineJob:
    engine: str
    job_definition: str  # name, without revision
    created_at: str | None
    vcpus: int | None
    memory_mib: int | None
    work_dir: str | None  # the task's work directory, read from the command the engine gave it
    tags: dict[str, str] = field(default_factory=dict)


class NotALabBatchJob(ValueError):
    """A Batch job the API did not submit (no LABBATCH_JOB_ID): nothing to update."""


def iso_from_millis(millis: int | None) -> str | None:
    if millis is None:
        return None
    moment = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_state_change(event: dict[str, Any]) -> StatusUpdate:
    change = BatchStateChange.model_validate(event)
    detail = change.detail
    env = {variable.name: variable.value for variable in detail.container.environment}
    array = detail.arrayProperties
    child_index = array.index if array else None
    batch_job_id = detail.jobId.split(":", 1)[0] if child_index is not None else detail.jobId
    ledger_job_id = env.get(JOB_ID_ENV)
    engine_job = None
    if not ledger_job_id:
        engine_job = _engine_job(detail)
        if engine_job is None:
            raise NotALabBatchJob(f"Batch job {detail.jobId} has no {JOB_ID_ENV} in its environment, and its job "
                                  f"definition {detail.jobDefinition!r} is no workflow engine's")
        # The same id from every delivery of every event of this Batch job (and of its children).
        ledger_job_id = job_id_from(detail.createdAt or 0, hashlib.sha256(batch_job_id.encode()).digest()[:10])
    log_group = None
    if detail.container.logConfiguration is not None:
        log_group = detail.container.logConfiguration.options.get("awslogs-group")
    log_stream = detail.container.logStreamName or (
        detail.attempts[-1].container.logStreamName if detail.attempts else None
    )
    return StatusUpdate(
        ledger_job_id=ledger_job_id,
        batch_job_id=batch_job_id,
        status=detail.status,
        progress=progress_of(detail.status, len(detail.attempts)),
        event_time=change.time,
        status_reason=detail.statusReason,
        attempts=[_attempt(a) for a in detail.attempts],
        started_at=iso_from_millis(detail.startedAt),
        stopped_at=iso_from_millis(detail.stoppedAt),
        log={"group": log_group, "stream": log_stream} if (log_group or log_stream) else None,
        child_index=child_index,
        array_size=array.size if array and child_index is None else None,
        status_summary=array.statusSummary if array and child_index is None else None,
        environment=env,
        job_name=detail.jobName,
        job_queue=detail.jobQueue,
        evidence=_evidence(detail),
        engine_job=engine_job,
        vcpus=_requirement(detail.container, "VCPU"),
        memory_mib=_requirement(detail.container, "MEMORY"),
        created_at=iso_from_millis(detail.createdAt),
    )


def _engine_job(detail: JobDetail) -> EngineJob | None:
    """Nextflow's awsbatch executor registers `nf-<image>` job definitions and submits
    `bash -o pipefail -c '... <aws> s3 cp ... <workDir>/.command.run - | bash ...'`
    (nf-amazon 3.10.2: AwsBatchTaskHandler.normalizeJobDefinitionName, AwsBatchExecutor.s3Cmd)."""
    definition = (detail.jobDefinition or "").rsplit("/", 1)[-1].split(":", 1)[0]
    if not definition.startswith(NEXTFLOW_JOB_DEFINITION_PREFIX):
        return None
    vcpus = _requirement(detail.container, "VCPU") or detail.container.vcpus
    memory = _requirement(detail.container, "MEMORY") or detail.container.memory
    work = next((m.group(1) for arg in detail.container.command for m in [_NEXTFLOW_RUN.search(arg)] if m), None)
    return EngineJob(engine="nextflow", job_definition=definition, created_at=iso_from_millis(detail.createdAt),
                     vcpus=vcpus, memory_mib=memory, work_dir=work, tags=dict(detail.tags))


_NEXTFLOW_RUN = re.compile(r"(s3://\S+?)/\.command\.run\b")


def _requirement(container: Container, kind: str) -> int | None:
    for requirement in container.resourceRequirements:
        if requirement.type == kind:
            try:
                return int(float(requirement.value))
            except ValueError:
                return None
    return None


def _evidence(detail: JobDetail) -> list[AttemptEvidence]:
    evidence = [AttemptEvidence(a.container.exitCode, a.container.reason, a.statusReason) for a in detail.attempts]
    if evidence and evidence[-1].exit_code is None and evidence[-1].container_reason is None:
        # Some events carry the last attempt's exit code and reason only on the job's container.
        last = evidence[-1]
        evidence[-1] = AttemptEvidence(detail.container.exitCode, detail.container.reason, last.status_reason)
    return evidence


def _attempt(attempt: AttemptDetail) -> dict[str, Any]:
    reasons = [r for r in (attempt.statusReason, attempt.container.reason) if r]
    return {
        "exit_code": attempt.container.exitCode,
        "reason": "; ".join(dict.fromkeys(reasons)) or None,
        "log_stream": attempt.container.logStreamName,
        "started_at": iso_from_millis(attempt.startedAt),
        "stopped_at": iso_from_millis(attempt.stoppedAt),
    }
