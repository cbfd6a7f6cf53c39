"""The API handler's settings, clients, ledger and idempotent submission: built on the first
request of each container and kept, read by every router (jobs, TES, tokens, reports)."""

import functools
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from labbatch_api.admission import admit
from labbatch_api.clients import ApiClients, build_clients
from labbatch_api.job_models import SubmitJobRequest
from labbatch_api.ledger import JobLedger
from labbatch_api.submission import submit
from labbatch_contract.settings import LabSettings, load_settings

# A retried POST with the same key within this window returns the first answer.
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
IDEMPOTENCY_KEY_PREFIX = "labbatch-idempotency"

# Set when the idempotency layer answers from a stored result (the Idempotent-Replayed header).
replayed: ContextVar[bool] = ContextVar("replayed", default=False)


@dataclass(frozen=True)
class ApiRuntime:
    settings: LabSettings
    clients: ApiClients
    ledger: JobLedger
    idempotency_config: IdempotencyConfig
    submit_once: Callable[..., dict]


@functools.cache
def runtime() -> ApiRuntime:
    """Settings and clients, built on the first request of each container and kept."""
    settings = load_settings()
    clients = build_clients()
    config = IdempotencyConfig(
        event_key_jmespath="[caller, key]",
        payload_validation_jmespath="request",
        expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS,
        response_hook=_mark_replayed,
    )
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.table,
        key_attr="job_id",
        expiry_attr="expires_at",
        boto3_client=clients.dynamodb,
    )
    submit_once = idempotent_function(
        admit_and_submit,
        data_keyword_argument="submission",
        persistence_store=persistence,
        config=config,
        key_prefix=IDEMPOTENCY_KEY_PREFIX,
    )
    return ApiRuntime(settings, clients, JobLedger(clients.dynamodb, settings.table), config, submit_once)


def _mark_replayed(response: Any, _record: Any) -> Any:
    replayed.set(True)
    return response


def admit_and_submit(*, submission: dict, request: SubmitJobRequest) -> dict:
    """Everything a POST does, inside the idempotency guard when a key is given.

    Admission is inside too: a replay answers from the stored result without re-reading
    S3, and a refusal removes the in-progress marker so the key can be used again.
    """
    rt = runtime()
    job = admit(request, rt.settings, rt.clients.s3)
    return submit(
        job,
        caller=submission["caller"],
        idempotency_key=submission["key"],
        settings=rt.settings,
        clients=rt.clients,
        ledger=rt.ledger,
    )
