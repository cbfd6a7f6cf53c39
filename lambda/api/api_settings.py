"""The lab's settings as the CDK stack hands them to the API handler.

The stack serialises a small JSON document into the LABBATCH_SETTINGS environment variable
(Lambda caps the whole environment at 4 KB, so the document carries only what the API
decides with). It is parsed once per container; a malformed document fails the first
request loudly instead of admitting jobs against half-read limits.
"""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SETTINGS_ENV_VAR = "LABBATCH_SETTINGS"

QueueName = Literal["spot", "on-demand"]


class _Strict(BaseModel):
    # A key the handler does not know means the stack and the handler disagree on the
    # contract; refusing it beats silently ignoring a limit.
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class RecoverySettings(_Strict):
    # Read by the status updater (lambda/status/recovery.py); absent means all on.
    spot_to_on_demand: bool = True
    more_memory: bool = True
    infrastructure_retry: bool = True


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
    recovery: RecoverySettings | None = None


class LabSettings(_Strict):
    lab: str = Field(min_length=1)
    table: str = Field(min_length=3)
    buckets: Buckets
    queues: dict[QueueName, str]
    queue_max_vcpus: dict[QueueName, int]
    scratch_gib: int = Field(ge=1)
    # The largest request body (labbatch/api_limits.py, the one place it is stated).
    max_body_bytes: int = Field(ge=1)
    limits: Limits
    pipelines: dict[str, PipelineSettings]


class SettingsError(RuntimeError):
    """The deployment is broken, not the request: surfaces as a 500 and in the logs."""


def load_settings(environ: dict[str, str] | None = None) -> LabSettings:
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
