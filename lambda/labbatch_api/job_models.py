"""Request and response bodies of the job API, as pydantic models.

The request models check shape only (types, sizes, safe names); everything that needs the
lab's settings or S3 is checked by admission.py, which can name the offending field in
terms the caller sent.
"""

from __future__ import annotations

from typing import Annotated, Literal

from labbatch_contract.failures import Failure as FailureClass
from labbatch_contract.failures import RecoveryKind
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, StringConstraints, model_serializer

# Batch allows 2..10,000 children per array job; a single sample is submitted as a plain job.
MAX_SAMPLES = 10_000
MAX_INPUTS_PER_JOB = 100
MAX_INPUTS_PER_SAMPLE = 100
MAX_PARAMETERS = 64
MAX_PARAMETER_VALUE_CHARS = 4_096
MAX_S3_URI_CHARS = 1_100  # "s3://" + 63-char bucket + "/" + 1,024-byte key, with room

PARAMETER_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
# Sample names become path segments under the job's output prefix and on scratch.
SAMPLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

QueueName = Literal["spot", "on-demand"]
JobStatus = Literal[
    "PENDING_SUBMIT", "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"
]

S3Uri = Annotated[str, StringConstraints(min_length=6, max_length=MAX_S3_URI_CHARS)]
ParameterName = Annotated[str, StringConstraints(pattern=PARAMETER_NAME_PATTERN)]
ParameterValue = Annotated[str, StringConstraints(max_length=MAX_PARAMETER_VALUE_CHARS)]
Parameters = Annotated[dict[ParameterName, ParameterValue], Field(max_length=MAX_PARAMETERS)]


class _Request(BaseModel):
    # strict: "2" is not a vCPU count and 7 is not a parameter value; say so instead of guessing.
    model_config = ConfigDict(extra="forbid", strict=True)


class SampleRequest(_Request):
    name: Annotated[str, StringConstraints(pattern=SAMPLE_NAME_PATTERN)]
    inputs: list[S3Uri] = Field(min_length=1, max_length=MAX_INPUTS_PER_SAMPLE)
    parameters: Parameters = Field(default_factory=dict)


class SubmitJobRequest(_Request):
    pipeline: str = Field(min_length=1, max_length=128)
    inputs: list[S3Uri] = Field(
        default_factory=list,
        max_length=MAX_INPUTS_PER_JOB,
        description="s3:// URIs in the lab's inputs or references bucket. With samples, these are "
        "shared by every sample.",
    )
    parameters: Parameters = Field(default_factory=dict)
    queue: QueueName | None = Field(default=None, description="Default: the pipeline's default queue.")
    pool: str | None = Field(default=None, min_length=1, max_length=64, description=(
        "The instance pool to run on (GET /pipelines lists them). Default: the pipeline's pool, or the cheapest "
        "pool whose instances hold the job. A pipeline that names its pool runs only there."))
    vcpus: int | None = Field(default=None, ge=1)
    memory_mib: int | None = Field(default=None, ge=4)
    gpus: int | None = Field(default=None, ge=1, le=8, description=(
        "GPUs for this job, at least the pipeline's (`labbatch doctor`'s GPU canary asks for one). Default: the "
        "pipeline's. The runner checks the job sees them before its tool starts."))
    name: str | None = Field(default=None, min_length=1, max_length=256)
    samples: list[SampleRequest] | None = Field(default=None, min_length=1, max_length=MAX_SAMPLES)


class SubmitJobResponse(BaseModel):
    job_id: str
    status: JobStatus
    output_prefix: str
    pipeline: str
    queue: QueueName
    name: str | None = None
    batch_job_id: str | None = None
    created_at: str
    array_size: int | None = None
    samples_uri: str | None = None


class Attempt(BaseModel):
    exit_code: int | None = None
    reason: str | None = None
    stderr_tail: str | None = Field(default=None, description="A failed attempt's cause in the tool's own words "
                                    "(its last output line, as the runner named it), when Batch's reason says less.")
    log_stream: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None


class LogLocation(BaseModel):
    group: str | None = None
    stream: str | None = None


class CancelRequest(BaseModel):
    requested_at: str
    requested_by: str
    action: Literal["cancel", "terminate"]


class SubmitError(BaseModel):
    code: str
    message: str
    outcome: Literal["not_submitted", "unknown"]


class WaitingExplanation(BaseModel):
    """Why a job has been RUNNABLE for a while (or was cancelled by its queue's time limit); see waiting.py."""

    cause: str
    message: str
    fix: str
    details: dict = Field(default_factory=dict)
    waiting_seconds: int | None = None
    status_reason: str | None = None
    array_index: int | None = None




class Recovery(BaseModel):
    """On a job LabBatch resubmitted: why, and the kinds used so far along the chain (each once)."""

    kind: RecoveryKind
    reason: str
    original_job_id: str | None = None
    kinds_used: list[RecoveryKind] = Field(default_factory=list)


class RecoveryRefused(BaseModel):
    """On a failed job LabBatch did not resubmit though its class allows it: why not."""

    kind: RecoveryKind
    reason: str


class ChildView(BaseModel):
    """One child of an array job, from its ledger item (written by the status updater)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(description="The array job's id.")
    index: int = Field(ge=0, description="The child's array index (its sample's position in the request).")
    sample: str | None = Field(default=None, description="The sample's name; known for failed children and "
                               "when the child is asked for by name.")
    status: JobStatus
    failure: FailureClass | None = None
    reason: str | None = Field(default=None, description="Why it failed: the runner's message (naming the "
                               "tool's last line of output), else AWS Batch's reason.")
    exit_code: int | None = None
    log: LogLocation | None = None
    manifest: str | None = Field(default=None, description="s3:// URI of the runner's manifest of the child.")
    started_at: str | None = None
    stopped_at: str | None = None


class ChildListResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    children: list[ChildView]
    next_token: str | None = Field(default=None, description="Pass as next_token for the next page (higher "
                                   "indexes); absent on the last page.")


class JobView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str
    name: str | None = None
    pipeline: str
    queue: QueueName
    status: JobStatus
    status_reason: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    submitted_by: str
    created_at: str
    submitted_at: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    output_prefix: str
    log: LogLocation | None = None
    children: dict[str, int] | None = None
    array_size: int | None = None
    samples_uri: str | None = None
    inputs: list[str] = Field(default_factory=list)
    parameters: dict[str, str] = Field(default_factory=dict)
    vcpus: int
    memory_mib: int
    batch_job_id: str | None = None
    cancel: CancelRequest | None = None
    submit_error: SubmitError | None = None
    # FAILED jobs: why, as a class (lambda/labbatch_status/failure_classes.py); and the links between a
    # failed job and the job LabBatch resubmitted for it (lambda/labbatch_status/recovery.py).
    failure: FailureClass | None = None
    recovered_by: str | None = Field(default=None, description="The job LabBatch resubmitted this one as.")
    recovered_from: str | None = Field(default=None, description="The failed job this one recovers.")
    recovery: Recovery | None = None
    recovery_refused: RecoveryRefused | None = None
    waiting_because: WaitingExplanation | None = None
    # Array jobs with failed children (GET /jobs/{id} only; lists leave them out).
    child_failures: dict[FailureClass, int] | None = Field(
        default=None, description="Array jobs: how many children failed, by failure class.")
    failed_children: list[ChildView] | None = Field(
        default=None, description="Array jobs: the first failed children in index order, with sample, class, "
        "reason and log; the rest through GET /jobs/{job_id}/children?status=FAILED.")
    failed_children_next_token: str | None = Field(
        default=None, description="Pass as next_token to GET /jobs/{job_id}/children?status=FAILED for the "
        "failed children after these; absent when all are shown.")


class JobListResponse(BaseModel):
    jobs: list[JobView]
    next_token: str | None = Field(
        default=None, description="Pass as next_token to get the next (older) page; absent on the last page."
    )


class ParameterSpec(BaseModel):
    required: bool
    default: str | None = None


class PipelineDefaults(BaseModel):
    vcpus: int
    memory_mib: int
    timeout_minutes: int
    disk_factor: float
    queue: QueueName
    gpus: int = 0


class PipelineLimits(BaseModel):
    """The most one job of the pipeline can get, on the pools it may be placed on."""

    max_vcpus: int
    max_memory_mib: int
    scratch_gib: int
    max_gpus: int = 0


class PoolLimits(BaseModel):
    max_vcpus: int
    max_memory_mib: int = Field(description="What ECS can give one job on the pool's largest type, after the "
                                "agent's reserved memory.")
    scratch_gib: int
    max_gpus: int = 0
    gpu_memory_mib: int = Field(0, description="Memory per GPU on the pool's largest GPU type.")
    lab_max_gpus: int | None = Field(None, description="Local mode only: the GPUs the pool gives in AWS, when "
                                     "this machine gives none (no NVIDIA runtime).")


class PoolView(BaseModel):
    """An instance pool: its queues and what one job can get on its instances."""

    name: str
    gpu: bool = False
    queues: dict[str, str] = Field(description="spot / on-demand -> the Batch job queue")
    queue_max_vcpus: dict[str, int]
    limits: PoolLimits


class LabDefaults(BaseModel):
    vcpus: int
    memory_mib: int


class PipelineLocal(BaseModel):
    """Local mode only: how this machine runs the pipeline otherwise than the lab's instances would."""

    image: str | None = Field(default=None, description="The pipeline's own image, when a local image stands in for it.")
    stand_in: str | None = Field(default=None, description="The local image its attempts run in instead "
                                 "(the lab file's local.images).")
    scaled_from: LabDefaults | None = Field(default=None, description="The lab file's defaults, when "
                                            "local.fit_to_machine scaled them down to this machine's (the defaults shown).")


class PipelineView(BaseModel):
    name: str
    description: str
    defaults: PipelineDefaults
    parameters: dict[str, ParameterSpec]
    secondary_files: dict[str, list[str]] = Field(default_factory=dict, description=(
        "Companion files staged beside each file value (CWL secondaryFiles notation: .bai appended, ^.bai "
        "replacing the extension, a trailing ? when optional), by what they travel with: inputs, shared_inputs "
        "or param:NAME. A submission missing a required one is refused."))
    limits: PipelineLimits
    pool: str | None = Field(default=None, description="The pool the lab file names for it; null: each job goes "
                             "to the cheapest pool whose instances hold it.")
    local: PipelineLocal | None = Field(default=None, description="Local mode only (`labbatch local`): stand-in "
                                        "image and scaled defaults; absent for a deployed lab.")

    @model_serializer(mode="wrap")
    def _no_local_when_deployed(self, handler: SerializerFunctionWrapHandler):
        # Absent, not null, for a deployed lab: there is nothing local to say. No return type,
        # so the OpenAPI schema stays the fields' own.
        data = handler(self)
        if data.get("local") is None:
            data.pop("local", None)
        return data


class PipelinesResponse(BaseModel):
    pipelines: list[PipelineView]
    pools: list[PoolView] = Field(default_factory=list)


class EnvironmentState(BaseModel):
    """A compute environment as Batch describes it (MISSING: Batch does not know it)."""

    name: str
    state: str | None = None
    status: str | None = None
    status_reason: str | None = None
    type: str | None = None
    max_vcpus: int | None = None
    desired_vcpus: int | None = None
    instance_types: list[str] = Field(default_factory=list)
    ecs_cluster: str | None = Field(default=None, description="The ECS cluster its instances join (ARN).")


class QueueState(BaseModel):
    queue: str
    name: str
    pool: str = "default"
    state: str | None = None
    status: str | None = None
    status_reason: str | None = None
    compute_environments: list[EnvironmentState]


class PipelineState(BaseModel):
    name: str
    job_definition: str
    revision: int | None = None
    status: Literal["ACTIVE", "MISSING"]
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    log_group: str | None = None
    pool: str | None = None
    gpus: int = 0


class LabBuckets(BaseModel):
    inputs: str
    references: str
    results: str


class TesState(BaseModel):
    """The lab's GA4GH TES endpoint, when it is on."""

    base_path: str = Field(description="where TES 1.1 lives on this API; clients that append /v1/tasks may "
                                       "also be given the API's own URL")
    allowed_images: list[str]


class LabResponse(BaseModel):
    """GET /lab: what `labbatch doctor` checks, as Batch reports it now."""

    lab: str
    queues: list[QueueState]
    pools: list[PoolView] = Field(default_factory=list)
    pipelines: list[PipelineState]
    buckets: LabBuckets
    tes: TesState | None = Field(None, description="null: the lab's TES endpoint is off (tes.allowed_images empty)")
    caller: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail
