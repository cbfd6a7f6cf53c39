"""The job routes: POST /jobs, GET /jobs, GET and DELETE /jobs/{job_id}, an array job's children,
GET /lab and GET /pipelines. Every error is an ApiError, answered by the handler's one shape."""

import json
import re
from http import HTTPStatus
from typing import Annotated, Any, Literal, Optional

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from botocore.exceptions import BotoCoreError, ClientError

from labbatch_api.aws_faults import error_code
from labbatch_api.batch_requests import stop_job
from labbatch_api.errors import ERROR_RESPONSES, ApiError, iam_caller
from labbatch_api.job_models import (
    ChildListResponse,
    ChildView,
    JobListResponse,
    JobStatus,
    JobView,
    LabDefaults,
    LabResponse,
    ParameterSpec,
    PipelineDefaults,
    PipelineLimits,
    PipelineLocal,
    PipelinesResponse,
    PipelineView,
    SubmitJobRequest,
    SubmitJobResponse,
)
from labbatch_api.lab_state import lab_view
from labbatch_api.ledger import decode_child_token, encode_child_token
from labbatch_api.pool_views import pipeline_limits, pool_views
from labbatch_api.runtime import admit_and_submit, replayed, runtime
from labbatch_api.waiting import explain as explain_waiting
from labbatch_contract import batch_reasons
from labbatch_contract.ids import JOB_ID_PATTERN, utc_timestamp
from labbatch_contract.ledger import FINAL_STATUSES, sample_name_at
from labbatch_contract.settings import LocalPipelineSettings as PipelineLocalSettings

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# GET /jobs/{id} of an array job names this many failed children; the rest are a page away.
FAILED_CHILDREN_SHOWN = 10

logger = Logger(service="labbatch-api", child=True)
router = Router()
_JOB_ID = re.compile(JOB_ID_PATTERN)


def _caller_arn() -> str:
    return iam_caller(router.current_event.raw_event)


def _json(status: int, model: Any, headers: dict[str, str] | None = None) -> Response:
    # A dict, not a JSON string: Powertools validates it against the route's response model.
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump(mode="json"),
        headers=headers or {},
    )


@router.post(
    "/jobs",
    summary="Submit a job (or an array job, with samples)",
    description="Send an Idempotency-Key header to make retries safe: the same key and body return "
    "the same job; the same key with a different body is refused (422).",
    responses={202: {"description": "Accepted"}, **ERROR_RESPONSES},
)
def create_job(
    request: Annotated[SubmitJobRequest, Body()],
    idempotency_key: Annotated[Optional[str], Header(alias="Idempotency-Key", min_length=1, max_length=255)] = None,
) -> Response[SubmitJobResponse]:
    caller = _caller_arn()
    submission = {"caller": caller, "key": idempotency_key, "request": request.model_dump(mode="json")}
    replayed.set(False)
    rt = runtime()
    if idempotency_key is None:
        body = admit_and_submit(submission=submission, request=request)
    else:
        body = rt.submit_once(submission=submission, request=request)
    headers = {"Idempotent-Replayed": "true"} if replayed.get() else {}
    return _json(HTTPStatus.ACCEPTED, SubmitJobResponse.model_validate(body), headers)


@router.get("/jobs", summary="List jobs, newest first", responses={200: {"description": "OK"}, **ERROR_RESPONSES})
def list_jobs(
    status: Annotated[Optional[JobStatus], Query()] = None,
    pipeline: Annotated[Optional[str], Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_token: Annotated[Optional[str], Query(min_length=1, max_length=512)] = None,
) -> Response[JobListResponse]:
    records, token = runtime().ledger.list_jobs(status=status, pipeline=pipeline, limit=limit, next_token=next_token)
    return _json(HTTPStatus.OK, JobListResponse(jobs=[JobView.model_validate(r) for r in records], next_token=token))


@router.get("/jobs/<job_id>", summary="One job's record", responses={200: {"description": "OK"}, **ERROR_RESPONSES})
def get_job(job_id: str) -> Response[JobView]:
    record = _existing_job(job_id)
    rt = runtime()
    try:
        waiting_because = explain_waiting(record, rt.clients.batch, rt.settings)
    except (ClientError, BotoCoreError) as error:
        # The record answers anyway; the explanation is extra.
        logger.warning("Could not explain the wait", extra={"job_id": job_id, "error_code": error_code(error)})
        waiting_because = None
    if waiting_because is not None:
        record = {**record, "waiting_because": waiting_because}
    if record.get("array_size") and record.get("child_failures"):
        page, last = rt.ledger.failed_children(record, limit=FAILED_CHILDREN_SHOWN)
        record = {**record, "failed_children": [_child_view(job_id, i, item) for i, item in page],
                  "failed_children_next_token": encode_child_token(last) if last is not None else None}
    return _json(HTTPStatus.OK, JobView.model_validate(record))


@router.get(
    "/jobs/<job_id>/children",
    summary="An array job's failed children, in index order, a page at a time",
    description="Each with its sample, failure class, reason and log. Only status=FAILED is listed.",
    responses={200: {"description": "OK"}, **ERROR_RESPONSES},
)
def list_children(
    job_id: str,
    status: Annotated[Literal["FAILED"], Query()] = "FAILED",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_token: Annotated[Optional[str], Query(min_length=1, max_length=512)] = None,
) -> Response[ChildListResponse]:
    record = _array_job(job_id)
    after = decode_child_token(next_token) if next_token else None
    page, last = runtime().ledger.failed_children(record, limit=limit, after=after)
    return _json(HTTPStatus.OK, ChildListResponse(
        job_id=job_id, children=[_child_view(job_id, i, item) for i, item in page],
        next_token=encode_child_token(last) if last is not None else None))


@router.get(
    "/jobs/<job_id>/children/<child>",
    summary="One child of an array job, by array index or sample name",
    description="A child named only by digits is its index. A sample name is looked up in the job's sample "
    "list, which is kept as long as the lab's work/ objects are.",
    responses={200: {"description": "OK"}, **ERROR_RESPONSES},
)
def get_child(job_id: str, child: str) -> Response[ChildView]:
    record = _array_job(job_id)
    size = int(record["array_size"])
    samples = None
    if child.isascii() and child.isdigit():
        index = int(child)
    else:
        samples = _sample_list(record, child)
        index = next((i for i in range(len(samples)) if sample_name_at(samples, i) == child), size)
    if index >= size:
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_child",
                       f"child: job {job_id} has no child {child!r} (indexes 0-{size - 1}, or a sample's name)",
                       field="child", details={"array_size": size})
    item = runtime().ledger.child(job_id, index)
    if item is None:
        # Not heard of yet; a job that succeeded had every child succeed.
        item = {"status": "SUCCEEDED" if record.get("status") == "SUCCEEDED" else "SUBMITTED"}
    sample = item.get("sample")
    if sample is None:
        if samples is None:
            try:
                samples = _sample_list(record, child)
            except ApiError:
                samples = None
        sample = sample_name_at(samples, index) if samples is not None else None
    return _json(HTTPStatus.OK, _child_view(job_id, index, item, sample=sample))


def _array_job(job_id: str) -> dict:
    record = _existing_job(job_id)
    if not record.get("array_size"):
        raise ApiError(HTTPStatus.NOT_FOUND, "not_an_array_job",
                       f"job_id: job {job_id} is not an array job: it has no children", field="job_id")
    return record


def _sample_list(record: dict, child: str) -> list:
    uri = str(record.get("samples_uri") or "")
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        body = runtime().clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        samples = json.loads(body)
    except ClientError as error:
        if error_code(error) not in ("NoSuchKey", "404", "NoSuchBucket"):
            raise
        samples = None
    except ValueError:
        samples = None
    if not isinstance(samples, list):
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_child",
                       f"child: the sample list of job {record['job_id']} is no longer kept; "
                       f"address the child by its index instead of {child!r}", field="child")
    return samples


def _child_view(job_id: str, index: int, item: dict, *, sample: str | None = None) -> ChildView:
    fields = ("failure", "reason", "exit_code", "log", "manifest", "started_at", "stopped_at")
    return ChildView(job_id=job_id, index=index, sample=item.get("sample") or sample,
                     status=item.get("status") or "SUBMITTED",
                     **{name: item[name] for name in fields if item.get(name) is not None})


@router.get("/lab", summary="The lab's queues, compute environments and pipeline images, as Batch reports them",
         responses={200: {"description": "OK"}, **ERROR_RESPONSES})
def get_lab() -> Response[LabResponse]:
    rt = runtime()
    view = LabResponse.model_validate({**lab_view(rt.clients.batch, rt.settings), "caller": _caller_arn()})
    return _json(HTTPStatus.OK, view)


@router.delete(
    "/jobs/<job_id>",
    summary="Cancel a job that has not started, or terminate a running one",
    responses={202: {"description": "Cancel requested"}, **ERROR_RESPONSES},
)
def cancel_job(job_id: str) -> Response[JobView]:
    caller = _caller_arn()
    rt = runtime()
    record = _existing_job(job_id)
    if record["status"] in FINAL_STATUSES:
        raise _finished(job_id, record["status"])
    batch_job_id = record.get("batch_job_id")
    if not batch_job_id:
        raise ApiError(
            HTTPStatus.CONFLICT,
            "job_not_submitted_yet",
            f"job {job_id} is still being submitted to AWS Batch; try again in a moment",
            details={"job_id": job_id},
            headers={"Retry-After": "1"},
        )
    # The ledger follows Batch through events, a little behind: ask Batch where the job is
    # now, because cancelling a job that has started does nothing.
    live = rt.clients.batch.describe_jobs(jobs=[batch_job_id]).get("jobs", [])
    if not live or live[0]["status"] in FINAL_STATUSES:
        raise _finished(job_id, live[0]["status"] if live else "finished")
    action = stop_job(rt.clients.batch, batch_job_id, live[0]["status"], batch_reasons.api_cancel(caller))
    logger.info("Stop requested", extra={"job_id": job_id, "batch_job_id": batch_job_id, "action": action})
    record = rt.ledger.record_cancel(
        job_id, {"requested_at": utc_timestamp(), "requested_by": caller, "action": action}
    )
    return _json(HTTPStatus.ACCEPTED, JobView.model_validate(record))


@router.get("/pipelines", summary="What this lab can run, with defaults and limits")
def list_pipelines() -> Response[PipelinesResponse]:
    settings = runtime().settings
    pipelines = [
        PipelineView(
            name=name,
            description=pipeline.description,
            defaults=PipelineDefaults(
                vcpus=pipeline.vcpus,
                memory_mib=pipeline.memory_mib,
                timeout_minutes=pipeline.timeout_minutes,
                disk_factor=pipeline.disk_factor,
                queue=pipeline.default_queue,
                gpus=pipeline.gpus,
            ),
            parameters={
                key: ParameterSpec(required=default is None, default=default)
                for key, default in pipeline.parameters.items()
            },
            secondary_files=pipeline.secondary_files,
            limits=PipelineLimits(**pipeline_limits(settings, pipeline)),
            pool=pipeline.pool,
            local=_pipeline_local(pipeline.local),
        )
        for name, pipeline in sorted(settings.pipelines.items())
    ]
    return _json(HTTPStatus.OK, PipelinesResponse(pipelines=pipelines, pools=pool_views(settings)))


def _pipeline_local(local: PipelineLocalSettings | None) -> PipelineLocal | None:
    """Local mode's stand-in image and scaled defaults (labbatch/local/lab.py); None when deployed."""
    if local is None:
        return None
    scaled = LabDefaults(vcpus=local.lab_vcpus, memory_mib=local.lab_memory_mib) if local.lab_vcpus is not None else None
    return PipelineLocal(image=local.image, stand_in=local.stand_in, scaled_from=scaled)


def _existing_job(job_id: str) -> dict:
    record = runtime().ledger.get(job_id) if _JOB_ID.match(job_id) else None
    if record is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_job", f"job_id: there is no job {job_id!r}", field="job_id")
    return record


def _finished(job_id: str, status: str) -> ApiError:
    return ApiError(
        HTTPStatus.CONFLICT,
        "job_finished",
        f"job {job_id} has already finished ({status}); there is nothing to cancel",
        details={"job_id": job_id, "status": status},
    )


