"""Strict models of GA4GH TES 1.1 answers, for checking what LabBatch sends (tests only).

Written from the specification (ga4gh/task-execution-schemas, openapi/task_execution_service.
openapi.yaml at tag v1.1, and GA4GH service-info 1.0.0, which tesServiceInfo extends), not from
lambda/labbatch_api/tes_models.py: a model shared with the code under test would agree with any mistake
in it. Every object forbids keys the specification does not define (py-tes 1.1.4 refuses them),
types are strict (a number is not a string, null is not a string), states and file types are the
specification's enums, and times are RFC 3339.

The view rules come from the `view` parameter's description: MINIMAL holds ONLY id and state;
BASIC holds everything EXCEPT ExecutorLog.stdout/stderr, Input.content and TaskLog.system_logs;
FULL holds everything. They are separate models here (the FULL ones extend the BASIC ones), so
a BASIC answer carrying a FULL-only field fails as an unknown key.

Errors are not in TES 1.1 (it defines no error body); `ErrorAnswer` is LabBatch's one error shape,
with the field to change always named.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

INT32 = Field(ge=-(2**31), le=2**31 - 1)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT64 = re.compile(r"^-?\d{1,19}$")


def _rfc3339(value: str) -> str:
    if not _RFC3339.match(value):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    return value


def _int64_text(value: str) -> str:
    if not _INT64.match(value) or not -(2**63) <= int(value) < 2**63:
        raise ValueError(f"not an int64 written as a string: {value!r}")
    return value


def _uri(value: str) -> str:
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", value):
        raise ValueError(f"not a URI: {value!r}")
    return value


Timestamp = Annotated[str, AfterValidator(_rfc3339)]
Int64Text = Annotated[str, AfterValidator(_int64_text)]
Uri = Annotated[str, AfterValidator(_uri)]
Int32 = Annotated[int, INT32]


class State(str, Enum):
    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"


class FileType(str, Enum):
    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


class View(str, Enum):
    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


class ServiceArtifact(str, Enum):
    tes = "tes"


# Optional fields default to None but are typed without Optional: the specification's strings,
# arrays and objects are never nullable, so an explicit null must fail (defaults are not validated).
class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- the task document ------------------------------------------------------------------------

class InputBasic(_Spec):
    name: str = None
    description: str = None
    url: str = None
    path: str
    type: FileType = None
    streamable: bool = None


class InputFull(InputBasic):
    content: str = None


class Output(_Spec):
    name: str = None
    description: str = None
    url: str
    path: str
    path_prefix: str = None
    type: FileType = None


class Resources(_Spec):
    cpu_cores: Int32 = None
    preemptible: bool = None
    ram_gb: float = None
    disk_gb: float = None
    zones: list[str] = None
    backend_parameters: dict[str, str] = None
    backend_parameters_strict: bool = None


class Executor(_Spec):
    image: str
    command: list[str]
    workdir: str = None
    stdin: str = None
    stdout: str = None
    stderr: str = None
    env: dict[str, str] = None
    ignore_error: bool = None


class ExecutorLogBasic(_Spec):
    start_time: Timestamp = None
    end_time: Timestamp = None
    exit_code: Int32


class ExecutorLogFull(ExecutorLogBasic):
    stdout: str = None
    stderr: str = None


class OutputFileLog(_Spec):
    url: str
    path: str
    size_bytes: Int64Text


class TaskLogBasic(_Spec):
    logs: list[ExecutorLogBasic]
    metadata: dict[str, str] = None
    start_time: Timestamp = None
    end_time: Timestamp = None
    outputs: list[OutputFileLog]


class TaskLogFull(TaskLogBasic):
    logs: list[ExecutorLogFull]
    system_logs: list[str] = None


class TaskMinimal(_Spec):
    id: str
    state: State


class TaskBasic(TaskMinimal):
    # id and state are readOnly in tesTask (the server fills them), so an answer always has them.
    name: str = None
    description: str = None
    inputs: list[InputBasic] = None
    outputs: list[Output] = None
    resources: Resources = None
    executors: list[Executor]
    volumes: list[str] = None
    tags: dict[str, str] = None
    logs: list[TaskLogBasic] = None
    creation_time: Timestamp = None


class TaskFull(TaskBasic):
    inputs: list[InputFull] = None
    logs: list[TaskLogFull] = None


TASK_BY_VIEW: dict[str, type[TaskMinimal]] = {"MINIMAL": TaskMinimal, "BASIC": TaskBasic, "FULL": TaskFull}


# --- the answers --------------------------------------------------------------------------------

class CreateTaskResponse(_Spec):
    id: str


class CancelTaskResponse(_Spec):
    """tesCancelTaskResponse: an object with no properties."""


class ListMinimal(_Spec):
    tasks: list[TaskMinimal]
    next_page_token: str = None


class ListBasic(ListMinimal):
    tasks: list[TaskBasic]


class ListFull(ListMinimal):
    tasks: list[TaskFull]


LIST_BY_VIEW: dict[str, type[ListMinimal]] = {"MINIMAL": ListMinimal, "BASIC": ListBasic, "FULL": ListFull}


class ServiceType(_Spec):
    group: str
    artifact: ServiceArtifact
    version: str


class Organization(_Spec):
    name: str
    url: Uri


class ServiceInfo(_Spec):
    id: str
    name: str
    type: ServiceType
    description: str = None
    organization: Organization
    contactUrl: Uri = None
    documentationUrl: Uri = None
    createdAt: Timestamp = None
    updatedAt: Timestamp = None
    environment: str = None
    version: str
    storage: list[str] = None
    tesResources_backend_parameters: list[str] = None


# --- LabBatch's error shape (TES 1.1 defines none) ---------------------------------------------

class ErrorDetails(BaseModel):
    # Beyond `field`, details carry what each refusal adds (limits, allowed values).
    model_config = ConfigDict(extra="allow", strict=True)
    field: Annotated[str, Field(min_length=1)]


class ErrorBody(_Spec):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    message: Annotated[str, Field(min_length=1)]
    details: ErrorDetails


class ErrorAnswer(_Spec):
    error: ErrorBody


# --- checking an answer -------------------------------------------------------------------------

def _text(body: Any) -> str:
    # Validated from JSON text, as a client reads it: strict mode then takes enum values as strings.
    return body if isinstance(body, str) else json.dumps(body)


def check(model: type[BaseModel], body: Any) -> BaseModel:
    return model.model_validate_json(_text(body))


def check_task(body: Any, view: Optional[str]) -> BaseModel:
    """A task in `view` (None: the default, MINIMAL); MINIMAL must hold exactly id and state."""
    view = view or "MINIMAL"
    parsed = check(TASK_BY_VIEW[view], body)
    if view == "MINIMAL":
        assert set(json.loads(_text(body))) == {"id", "state"}, body
    return parsed


def check_list(body: Any, view: Optional[str]) -> BaseModel:
    view = view or "MINIMAL"
    parsed = check(LIST_BY_VIEW[view], body)
    for task in json.loads(_text(body))["tasks"]:
        check_task(task, view)
    return parsed


def check_error(status: int, body: Any) -> ErrorAnswer:
    assert 400 <= status < 500, (status, body)
    return check(ErrorAnswer, body)
