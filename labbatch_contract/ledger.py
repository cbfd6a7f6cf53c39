"""The job ledger: its record layout and the writes that more than one runtime makes.

One DynamoDB item per submission, written before Batch hears of it:
- key `job_id` (S); `record_type` = "job" on job records only, so the `by_created` GSI
  (record_type, created_at) lists jobs newest first and skips idempotency and child items;
- `created_at`, `submitted_at`, `started_at`, `stopped_at`, `updated_at`: ISO-8601 UTC,
  fixed width (`ids.utc_timestamp`) so they sort as strings;
- `progress` (N): how far the job has got, the guard that keeps updates monotonic:
  0 PENDING_SUBMIT, attempts*10 + rank for Batch states (SUBMITTED 1 ... RUNNING 5), and
  PROGRESS_FINAL for SUCCEEDED/FAILED. An update applies only if it moves `progress` forward.
- array children: a small item `<job_id>/<index>` (`child_key`; no record_type, so never
  listed) with the child's `status` and `progress`; a FAILED child's item also carries what
  `GET /jobs/{id}` shows of it without reading S3 (CHILD_FAILURE_FIELDS): `sample`,
  `failure`, `reason` (the runner's failure message, which names the tool's last output line,
  else Batch's reason), `exit_code`, `log` {group, stream}, `manifest` (the runner's
  manifest URI), `stopped_at`. The parent lists its failed children's indexes in the number
  set `failed_child_indexes`, so they can be read back in index order, a page at a time.

The API writes a record first and submits second; the status updater's recoveries do the same.
Both go through `LedgerWrites`, so the two can never disagree on what SUBMITTED or a failed
submission looks like.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from labbatch_contract.failures import INFRASTRUCTURE
from labbatch_contract.ids import utc_timestamp

# The table's key schema: what the stack creates, local mode creates and the functions use.
PARTITION_KEY = "job_id"
BY_CREATED_INDEX = "by_created"
BY_CREATED_PARTITION = "record_type"
BY_CREATED_SORT = "created_at"
TTL_ATTRIBUTE = "expires_at"
RECORD_TYPE_JOB = "job"
PROGRESS_PENDING_SUBMIT = 0
PROGRESS_SUBMITTED = 1
PROGRESS_FINAL = 1_000_000
STATUS_RANK = {"SUBMITTED": 1, "PENDING": 2, "RUNNABLE": 3, "STARTING": 4, "RUNNING": 5}
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
CHILD_ITEM_TTL_SECONDS = 90 * 24 * 3600
FAILED_CHILD_INDEXES = "failed_child_indexes"
CHILD_FAILURE_FIELDS = ("sample", "failure", "reason", "exit_code", "log", "manifest", "stopped_at")
# A child's reason is one readable line, not a log.
CHILD_REASON_MAX_CHARS = 500
# What a job that never reached Batch failed of (failures.py's class for "could not start").
SUBMIT_FAILURE_CLASS = INFRASTRUCTURE

STATUS_PENDING_SUBMIT = "PENDING_SUBMIT"
SUBMITTING_REASON = "Recorded; submitting to AWS Batch"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def progress_of(status: str, attempts: int) -> int:
    if status in FINAL_STATUSES:
        return PROGRESS_FINAL
    if status not in STATUS_RANK:
        raise ValueError(f"not a Batch job status: {status!r}")
    return attempts * 10 + STATUS_RANK[status]


def child_key(job_id: str, index: int) -> str:
    """The ledger key of an array child's item."""
    return f"{job_id}/{index}"


def sample_name_at(sample_list: Any, index: int) -> str | None:
    """The name of sample `index` in an array job's sample list (the JSON array the API writes
    to `names.samples_key`: [{"name", "inputs", "parameters"?}, ...]); None if it has none."""
    if not isinstance(sample_list, list) or not 0 <= index < len(sample_list):
        return None
    sample = sample_list[index]
    name = sample.get("name") if isinstance(sample, dict) else None
    return name if isinstance(name, str) and name else None


def new_job_record(*, job_id: str, lab: str, pipeline: str | None, queue: str, job_queue: str,
                   job_definition: str, vcpus: int | None, memory_mib: int, output_prefix: str,
                   status_reason: str = SUBMITTING_REASON, created_at: str | None = None,
                   **fields: Any) -> dict[str, Any]:
    """A job's record as every submitter writes it before SubmitJob (PENDING_SUBMIT): the job
    API, the TES API and the status updater's recoveries. `fields` are what only that submitter
    knows (name, submitted_by, inputs, tes, recovered_from, ...); None values are left out, as
    the ledger leaves them out (to_item)."""
    created_at = created_at or utc_timestamp()
    record = {
        PARTITION_KEY: job_id,
        BY_CREATED_PARTITION: RECORD_TYPE_JOB,
        BY_CREATED_SORT: created_at,
        "updated_at": created_at,
        "lab": lab,
        "pipeline": pipeline,
        "queue": queue,
        "job_queue": job_queue,
        "job_definition": job_definition,
        "vcpus": vcpus,
        "memory_mib": memory_mib,
        "output_prefix": output_prefix,
        "status": STATUS_PENDING_SUBMIT,
        "status_reason": status_reason,
        "progress": PROGRESS_PENDING_SUBMIT,
        "attempts": [],
        **fields,
    }
    return {key: value for key, value in record.items() if value is not None}


def _numbers(value: Any) -> Any:
    """Floats (measured seconds, MiB) as the Decimals DynamoDB's serializer insists on."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    # Absent beats NULL: a missing attribute is what "not known yet" means in the ledger.
    return {key: _serializer.serialize(_numbers(value)) for key, value in record.items() if value is not None}


def expression_values(values: dict[str, Any]) -> dict[str, Any]:
    """ExpressionAttributeValues: every placeholder must be there, so None stays NULL."""
    return {key: _serializer.serialize(_numbers(value)) for key, value in values.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: plain(_deserializer.deserialize(value)) for key, value in item.items()}


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as the ints and floats JSON and the models expect; sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        # Number and string sets (failed_child_indexes) as sorted lists, which JSON can carry.
        return sorted(plain(v) for v in value)
    return value


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class LedgerWrites:
    """Recording a submission: the record before SubmitJob, then its outcome."""

    def __init__(self, dynamodb_client: Any, table_name: str):
        self._db = dynamodb_client
        self._table = table_name

    def create_pending(self, record: dict[str, Any]) -> None:
        self._db.put_item(TableName=self._table, Item=to_item(record),
                          ConditionExpression="attribute_not_exists(job_id)")

    def create_pending_once(self, record: dict[str, Any]) -> bool:
        """As create_pending; False when a record with its id exists (a redelivered event's)."""
        try:
            self.create_pending(record)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def mark_submitted(self, job_id: str, batch_job_id: str, submitted_at: str | None = None) -> None:
        """Store the Batch job id; move to SUBMITTED unless an event already moved it further."""
        at = submitted_at or utc_timestamp()
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET batch_job_id = :b, submitted_at = :t, updated_at = :t, "
                "#status = :submitted, progress = :p REMOVE status_reason",
                ConditionExpression="progress < :p",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":b": batch_job_id, ":t": at, ":submitted": "SUBMITTED", ":p": PROGRESS_SUBMITTED}),
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            # The status updater got there first (it finds records by LABBATCH_JOB_ID):
            # keep its state, add what only the submitter knows.
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET batch_job_id = :b, submitted_at = :t",
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeValues=to_item({":b": batch_job_id, ":t": at}),
            )

    def mark_submit_failed(self, job_id: str, reason: str, submit_error: dict[str, str],
                           at: str | None = None) -> bool:
        """FAILED with the reason; False when an event shows the job reached Batch after all."""
        at = at or utc_timestamp()
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET #status = :failed, status_reason = :r, submit_error = :e, "
                "progress = :p, stopped_at = :t, updated_at = :t, failure = :failure",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({
                    ":failed": "FAILED", ":pending": STATUS_PENDING_SUBMIT, ":r": reason, ":e": submit_error,
                    ":p": PROGRESS_FINAL, ":t": at, ":failure": SUBMIT_FAILURE_CLASS}),
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True
