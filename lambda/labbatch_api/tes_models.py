"""GA4GH TES 1.1 documents: what a client may send, and what LabBatch answers.

Requests ignore the read-only fields a client may echo back (id, state, logs, creation_time).
Responses carry ONLY fields the TES 1.1 specification defines (py-tes refuses any other),
absent rather than null when unknown: always dump them with `exclude_none=True`.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

IoType = Literal["FILE", "DIRECTORY"]
View = Literal["MINIMAL", "BASIC", "FULL"]
State = Literal["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED",
                "CANCELING"]
MAX_STRING = 4096


class _Request(BaseModel):
    # Python's json reads Infinity and NaN, which no resource can be.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TesInput(_Request):
    name: Optional[str] = Field(None, max_length=MAX_STRING)
    description: Optional[str] = Field(None, max_length=MAX_STRING)
    url: Optional[str] = Field(None, max_length=2048)
    path: str = Field(min_length=2, max_length=MAX_STRING)
    type: IoType = "FILE"
    content: Optional[str] = None
    streamable: Optional[bool] = None


class TesOutput(_Request):
    name: Optional[str] = Field(None, max_length=MAX_STRING)
    description: Optional[str] = Field(None, max_length=MAX_STRING)
    url: str = Field(min_length=6, max_length=2048)
    path: str = Field(min_length=2, max_length=MAX_STRING)
    path_prefix: Optional[str] = Field(None, max_length=MAX_STRING)
    type: IoType = "FILE"


class TesResources(_Request):
    cpu_cores: Optional[int] = Field(None, ge=1)
    preemptible: Optional[bool] = None
    ram_gb: Optional[float] = Field(None, gt=0)
    disk_gb: Optional[float] = Field(None, gt=0)
    zones: Optional[list[str]] = None
    backend_parameters: Optional[dict[str, str]] = None
    backend_parameters_strict: Optional[bool] = None


class TesExecutor(_Request):
    image: str = Field(min_length=1, max_length=1024)
    command: list[str] = Field(min_length=1)
    workdir: Optional[str] = Field(None, max_length=MAX_STRING)
    stdin: Optional[str] = Field(None, max_length=MAX_STRING)
    stdout: Optional[str] = Field(None, max_length=MAX_STRING)
    stderr: Optional[str] = Field(None, max_length=MAX_STRING)
    env: Optional[dict[str, str]] = None
    ignore_error: Optional[bool] = None


class TesTaskRequest(_Request):
    name: Optional[str] = Field(None, max_length=1024)
    description: Optional[str] = Field(None, max_length=MAX_STRING)
    inputs: list[TesInput] = Field(default_factory=list, max_length=1000)
    outputs: list[TesOutput] = Field(default_factory=list, max_length=1000)
    resources: Optional[TesResources] = None
    executors: list[TesExecutor] = Field(min_length=1, max_length=100)
    volumes: Optional[list[str]] = None
    tags: Optional[dict[str, str]] = None


# --- responses -----------------------------------------------------------------------------

class ExecutorOut(_Response):
    image: str
    command: list[str]
    workdir: Optional[str] = None
    stdin: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    env: Optional[dict[str, str]] = None
    ignore_error: Optional[bool] = None


class InputOut(_Response):
    name: Optional[str] = None
    description: Optional[str] = None
    url: Optional[str] = None
    path: str
    type: IoType = "FILE"
    content: Optional[str] = None
    streamable: Optional[bool] = None


class OutputOut(_Response):
    name: Optional[str] = None
    description: Optional[str] = None
    url: str
    path: str
    path_prefix: Optional[str] = None
    type: IoType = "FILE"


class ResourcesOut(_Response):
    cpu_cores: Optional[int] = None
    preemptible: Optional[bool] = None
    ram_gb: Optional[float] = None
    disk_gb: Optional[float] = None
    zones: Optional[list[str]] = None
    backend_parameters: Optional[dict[str, str]] = None
    backend_parameters_strict: Optional[bool] = None


class ExecutorLog(_Response):
    start_time: Optional[str] = None
    end_time: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    exit_code: int


class OutputFileLog(_Response):
    url: str
    path: str
    size_bytes: str  # int64 as a string, as the specification says


class TaskLog(_Response):
    logs: list[ExecutorLog]
    metadata: Optional[dict[str, str]] = None
    start_time: Optional[str] = None
    end_time: Optional[str] = None
    outputs: list[OutputFileLog]
    system_logs: Optional[list[str]] = None


class TaskOut(_Response):
    id: str
    state: State
    name: Optional[str] = None
    description: Optional[str] = None
    inputs: Optional[list[InputOut]] = None
    outputs: Optional[list[OutputOut]] = None
    resources: Optional[ResourcesOut] = None
    executors: Optional[list[ExecutorOut]] = None
    volumes: Optional[list[str]] = None
    tags: Optional[dict[str, str]] = None
    logs: Optional[list[TaskLog]] = None
    creation_time: Optional[str] = None


class CreateTaskResponse(_Response):
    id: str


class ListTasksResponse(_Response):
    tasks: list[TaskOut]
    next_page_token: Optional[str] = None


class ServiceType(_Response):
    group: str
    artifact: str
    version: str


class Organization(_Response):
    name: str
    url: str


class ServiceInfo(_Response):
    id: str
    name: str
    type: ServiceType
    description: Optional[str] = None
    organization: Organization
    version: str
    storage: Optional[list[str]] = None
