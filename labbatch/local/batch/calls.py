"""What a Batch call can end in, and a SubmitJob request once resolved: shared by the REST-JSON
layer (batch_api, batch_http) and the executor, so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass

from labbatch_contract.batch_container import Container

from labbatch.local.batch.models import JobDefinition, JobQueue
from labbatch.local.batch.retry import RetryStrategy


class BatchClientError(Exception):
    code = "ClientException"
    status = 400


class BatchServerError(Exception):
    code = "ServerException"
    status = 500


@dataclass(frozen=True)
class SubmitRequest:
    """A SubmitJob request, resolved and checked: what the executor needs to create the job."""

    name: str
    queue: JobQueue
    definition: JobDefinition
    command: list[str]
    environment: dict[str, str]
    vcpus: int
    memory_mib: int
    array_size: int | None
    retry: RetryStrategy
    timeout_seconds: int | None
    parameters: dict[str, str]
    tags: dict[str, str]
    container: Container  # what the agent starts for it (labbatch_contract.batch_container)
    # Batch copies the job's tags to its ECS task (cost allocation by tag); reported as given.
    propagate_tags: bool = False
