"""The lab's settings as the CDK app hands them to both Lambda functions (`LABBATCH_SETTINGS`).

Built from the lab config on the CDK side (labbatch/lab/api_settings.py) through this very model,
and read by the API handler and the status updater through it too, so producer and consumers
cannot drift. Lambda caps a function's whole environment at 4 KB: the document carries only
what the functions decide with, and leaves out what equals its default.
"""

from __future__ import annotations

import json
import os
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SETTINGS_ENV_VAR = "LABBATCH_SETTINGS"

QueueName = Literal["spot", "on-demand"]
SharedInputsUse = Literal["none", "optional", "required"]


class _Strict(BaseModel):
    # A key a function does not know means the stack and the function disagree on the
    # contract; refusing it beats silently ignoring a limit.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _allowed(text: str) -> dict:
    return {"allowed": text}


class Buckets(_Strict):
    inputs: str = Field(min_length=3, max_length=63)
    references: str = Field(min_length=3, max_length=63)
    results: str = Field(min_length=3, max_length=63)


class Limits(_Strict):
    max_vcpus: int = Field(ge=1)
    max_memory_mib: int = Field(ge=4)
    # Local mode only, when this machine allows less than the lab's instances would: what the
    # instances give, so that a refusal says whose limit it is.
    lab_max_vcpus: int | None = None
    lab_max_memory_mib: int | None = None
    # GPU pools only: GPUs per job and memory per GPU on the pool's largest GPU type.
    max_gpus: int = Field(0, ge=0)
    gpu_memory_mib: int = Field(0, ge=0)
    # Local mode only, for a GPU pool on a machine whose engine has no NVIDIA runtime (max_gpus 0).
    lab_max_gpus: int | None = None


class RecoverySettings(_Strict):
    """What LabBatch resubmits, once each, when a job of this pipeline fails (lambda/labbatch_status/recovery.py).
    A tool's own non-zero exit (`application`) is never resubmitted. Also the lab file's schema."""

    spot_to_on_demand: bool = Field(True, json_schema_extra=_allowed(
        "true or false: a job whose spot attempts were all reclaimed runs once more on the on-demand queue"))
    more_memory: bool = Field(True, json_schema_extra=_allowed(
        "true or false: a job killed for memory runs once more with 1.5x the memory (up to the lab's limit)"))
    infrastructure_retry: bool = Field(True, json_schema_extra=_allowed(
        "true or false: a job that could not start, pull its image or stage its data runs once more"))


class LocalPipelineSettings(_Strict):
    """Local mode only (the lab file's `local:` block): how this machine runs the pipeline
    otherwise than the lab's instances would. Never in a deployed lab's settings."""

    # The pipeline's own image, and the local image its attempts run in instead.
    image: str | None = None
    stand_in: str | None = None
    # The lab file's defaults, when `fit_to_machine` scaled them down to this machine.
    lab_vcpus: int | None = None
    lab_memory_mib: int | None = None


class PipelineSettings(_Strict):
    job_definition: str = Field(min_length=1)
    vcpus: int = Field(ge=1)
    memory_mib: int = Field(ge=4)
    timeout_minutes: int = Field(ge=1)
    disk_factor: float = Field(gt=0)
    # Allowed parameter name -> default value, or None when the caller must supply it.
    parameters: dict[str, str | None] = Field(default_factory=dict)
    description: str = ""
    # The queue a request that names none goes to.
    default_queue: QueueName = "spot"
    recovery: RecoverySettings = RecoverySettings()
    # How the command uses an array request's shared (top-level) inputs: through
    # {shared_input} ("required"), only {shared_inputs} ("optional"), or not at all.
    shared_inputs: SharedInputsUse = "none"
    # Companion files per staged value (labbatch_contract.references): refused at submission when
    # a required one is missing.
    secondary_files: dict[str, list[str]] = Field(default_factory=dict)
    # The pool the lab file names for it; None: each job goes to the cheapest pool that holds it.
    pool: str | None = None
    gpus: int = Field(0, ge=0)
    local: LocalPipelineSettings | None = None


class TesSettings(_Strict):
    """The lab's GA4GH TES endpoint (lambda/labbatch_api/tes_routes.py). Off while `allowed_images` is empty."""

    # Image reference prefixes a task's executors may name.
    allowed_images: list[str] = Field(default_factory=list)
    # What a task's job definition is registered with (the lab's job role, execution role, log group).
    job_role_arn: str = ""
    execution_role_arn: str = ""
    log_group: str = ""
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    timeout_minutes: int = Field(1440, ge=1)
    attempts: int = Field(3, ge=1, le=10)
    # As a pipeline's: what LabBatch resubmits when a task's Batch job fails for a reason not the tool's.
    recovery: RecoverySettings = RecoverySettings()


class PoolSettings(_Strict):
    """One instance pool as placement sees it (labbatch_contract/placement.py)."""

    queues: dict[QueueName, str]
    queue_max_vcpus: dict[QueueName, int]
    scratch_gib: int = Field(ge=1)
    limits: Limits
    gpu: bool = False
    # Each instance type: [vCPUs, memory a job can get (MiB), GPUs, on-demand USD an hour], so
    # that placement finds the cheapest pool whose instances hold a job; empty in a one-pool lab.
    shapes: list[tuple[int, int, int, float]] = Field(default_factory=list)


DEFAULT_POOL = "default"


class LabSettings(_Strict):
    lab: str = Field(min_length=1)
    table: str = Field(min_length=3)
    buckets: Buckets
    queues: dict[QueueName, str]
    queue_max_vcpus: dict[QueueName, int]
    scratch_gib: int = Field(ge=1)
    # The largest request body (labbatch/lab/api_limits.py, the one place it is stated).
    max_body_bytes: int = Field(ge=1)
    limits: Limits
    pipelines: dict[str, PipelineSettings]
    tes: TesSettings = TesSettings()
    # Every pool, when the lab has more than the one pool `default`; the top-level queues,
    # queue_max_vcpus, scratch_gib and limits are then its first pool's. Empty: the top-level
    # fields are the one pool `default` (so a one-pool lab's document is unchanged).
    pools: dict[str, PoolSettings] = Field(default_factory=dict)

    def pool_map(self) -> dict[str, PoolSettings]:
        if self.pools:
            return dict(self.pools)
        return {DEFAULT_POOL: PoolSettings(queues=self.queues, queue_max_vcpus=self.queue_max_vcpus,
                                           scratch_gib=self.scratch_gib, limits=self.limits)}

    def pool_of_queue(self, job_queue: str) -> str | None:
        """The pool whose Batch queue this is (a ledger record names its queue, not its pool)."""
        return next((name for name, pool in self.pool_map().items() if job_queue in pool.queues.values()), None)

    def to_environment(self) -> str:
        """The compact JSON for LABBATCH_SETTINGS: defaults left out, to spare the 4 KB."""
        return self.model_dump_json(exclude_defaults=True)


class SettingsError(RuntimeError):
    """The deployment is broken, not the request: surfaces as a 500 and in the logs."""


def load_settings(environ: Mapping[str, str] | None = None) -> LabSettings:
    environ = os.environ if environ is None else environ
    raw = environ.get(SETTINGS_ENV_VAR)
    if not raw:
        raise SettingsError(f"{SETTINGS_ENV_VAR} is not set; the API stack must pass the lab settings")
    try:
        return LabSettings.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{SETTINGS_ENV_VAR} is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        raise SettingsError(f"{SETTINGS_ENV_VAR} does not match the settings contract: {exc}") from exc
