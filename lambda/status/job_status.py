"""LabBatch status updater: AWS Batch "Job State Change" events (EventBridge) -> job ledger.

Environment: LABBATCH_SETTINGS (only `table` is read; `lab` is logged), plus what boto3 and
Powertools read themselves (AWS_REGION, AWS_ENDPOINT_URL[_DYNAMODB], POWERTOOLS_*).

Failures to reach DynamoDB raise, so Lambda's asynchronous retries (and the DLQ the stack
configures) redeliver the event; replays are harmless because updates are monotonic.
Events that cannot be ours (another source, no LABBATCH_JOB_ID, malformed) are logged and
dropped: retrying them would never succeed.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batch_events import NotALabBatchJob, parse_state_change
from status_ledger import StatusLedger

SETTINGS_ENV_VAR = "LABBATCH_SETTINGS"
logger = Logger(service="labbatch-status")


class StatusSettings(BaseModel):
    # The API's settings document, of which this function needs only the table.
    model_config = ConfigDict(extra="ignore", frozen=True)
    lab: str = Field(min_length=1)
    table: str = Field(min_length=3)


@functools.cache
def status_ledger() -> tuple[StatusSettings, StatusLedger]:
    raw = os.environ.get(SETTINGS_ENV_VAR)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV_VAR} is not set; the API stack must pass the lab settings")
    settings = StatusSettings.model_validate(json.loads(raw))
    client = boto3.client(
        "dynamodb",
        config=Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=3, read_timeout=10),
    )
    return settings, StatusLedger(client, settings.table)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings, ledger = status_ledger()
    logger.append_keys(lab=settings.lab)
    if event.get("source") != "aws.batch" or event.get("detail-type") != "Batch Job State Change":
        logger.error("Not a Batch job state change; dropped", extra={"source": event.get("source")})
        return {"applied": False, "reason": "not a Batch job state change"}
    try:
        update = parse_state_change(event)
    except NotALabBatchJob as exc:
        logger.warning(str(exc))
        return {"applied": False, "reason": "not a LabBatch job"}
    except (ValidationError, ValueError) as exc:
        logger.error("Malformed Batch event; dropped", extra={"error": str(exc)[:2000]})
        return {"applied": False, "reason": "malformed event"}

    logger.append_keys(job_id=update.ledger_job_id, batch_job_id=update.batch_job_id)
    applied = ledger.apply(update)
    logger.info(
        "Ledger updated" if applied else "Event older than the ledger; ignored",
        extra={"status": update.status, "child_index": update.child_index, "progress": update.progress},
    )
    return {"applied": applied, "job_id": update.ledger_job_id, "status": update.status}
