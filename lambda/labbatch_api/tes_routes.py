"""GA4GH TES 1.1 on the lab's job API, under /ga4gh/tes/v1 (the first slice, issue 18).

One task is one ledger record (`pipeline` = labbatch_contract.tes.TES_PIPELINE, the task document
under `tes`) and one Batch job in the usual shape: the task's image, unmodified, with the runner
mounted and started through its own loader; the runner reads the task from LABBATCH_TES_TASK,
places inputs at their absolute paths, runs the executors in order and uploads the outputs.
Job definitions are registered on demand under names.tes_job_definition_prefix(lab).

Off unless the lab's `tes.allowed_images` lists image prefixes. Answers carry only fields the
specification defines (tes_models.py).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Optional

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from labbatch_api import tes_models as m
from labbatch_api import token_routes
from labbatch_api.batch_requests import batch_job_name, stop_job
from labbatch_api.errors import ApiError, iam_caller, refused
from labbatch_api.submission import StagedDocument, submit_recorded  # the one way a recorded job reaches Batch
from labbatch_api.tes_admission import check_task, document_text, parse_task, resolve_inputs
from labbatch_api.tes_resources import task_resources
from labbatch_api.tes_views import input_contents, latest, manifest, matches, recovery_chain, task_view
from labbatch_contract import batch_submit, names, runner_env
from labbatch_contract import tes as tes_rules
from labbatch_contract.ids import JOB_ID_PATTERN, new_job_id, utc_timestamp
from labbatch_contract.ledger import FINAL_STATUSES, new_job_record
from labbatch_contract.settings import LabSettings

logger = Logger(service="labbatch-api", child=True)
router = APIGatewayRouter()
PREFIX = "/ga4gh/tes/v1"
GIB = 1024**3
MAX_PAGE_SIZE = 100
# Manifests a list reads at once (one S3 GET each for the tasks that ended).
MANIFEST_READERS = 8
# A state filter may name any state TES 1.1 defines; those LabBatch never reports match nothing.
FILTER_STATES = (*tes_rules.STATES, "UNKNOWN", "PAUSED", "PREEMPTED")


def _runtime():
    """The handler's settings, clients and ledger, which the handler puts in the router's context."""
    return router.context["runtime"]


def _caller() -> str:
    """The IAM caller, or the owner of the bearer token the request came with (the authorizer's
    context): the one every task records as `submitted_by`."""
    event = router.current_event.raw_event
    by_token = token_routes.token_caller(event)
    if by_token is not None:
        token_routes.note_use(by_token[1])
        return by_token[0]
    try:
        return iam_caller(event)
    except ApiError as error:
        error.details.setdefault("field", "Authorization")
        raise


def _enabled_settings() -> LabSettings:
    settings = _runtime().settings
    if not settings.tes.allowed_images:
        raise ApiError(
            HTTPStatus.FORBIDDEN, "tes_disabled",
            f"lab {settings.lab} has no TES endpoint: tes.allowed_images is empty in its lab file "
            f"(labs/{settings.lab}.yaml); a platform engineer lists the image prefixes tasks may run",
            field="tes.allowed_images")
    return settings


def _answer(status: int, body: Any) -> Response:
    text = body.model_dump_json(exclude_none=True) if hasattr(body, "model_dump_json") else json.dumps(body)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=text)


# --- service-info ----------------------------------------------------------------------------

@router.get("/service-info", include_in_schema=False)  # TES 1.1 is its own document
# py-tes 0.4 (Snakemake's and Toil's plugins) asks `<url>/v1/tasks/service-info`; given
# `<api>/ga4gh/tes` as its URL, that lands here.
@router.get("/tasks/service-info", include_in_schema=False)
def service_info():
    settings = _enabled_settings()
    buckets = settings.buckets
    info = m.ServiceInfo(
        id=f"org.labbatch.{settings.lab}.tes",
        name=f"LabBatch {settings.lab} TES",
        type=m.ServiceType(group="org.ga4gh", artifact="tes", version="1.1.0"),
        description=("GA4GH TES on AWS Batch (LabBatch). Inputs: s3:// in the lab's buckets, or content. "
                     f"Outputs: s3://{buckets.results}/{names.TES_OUTPUTS_PREFIX}... . Images: "
                     + ", ".join(settings.tes.allowed_images) + "*"),
        organization=m.Organization(name="LabBatch", url="https://github.com/labbatch"),
        version="0.1.0",
        storage=[f"s3://{buckets.inputs}/", f"s3://{buckets.references}/",
                 f"s3://{buckets.results}/{names.TES_OUTPUTS_PREFIX}"],
    )
    return _answer(HTTPStatus.OK, info)


# --- create ----------------------------------------------------------------------------------

def ensure_job_definition(batch, settings: LabSettings, image: str) -> str:
    """The task image's job definition, registered the first time this shape is asked for."""
    request = tes_rules.job_definition_request(
        lab=settings.lab, image=image, job_role_arn=settings.tes.job_role_arn,
        execution_role_arn=settings.tes.execution_role_arn, log_group=settings.tes.log_group,
        architecture=settings.tes.architecture, timeout_minutes=settings.tes.timeout_minutes,
        attempts=settings.tes.attempts)
    name = request["jobDefinitionName"]
    found = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE").get("jobDefinitions", [])
    if not found:
        batch.register_job_definition(**request)
        logger.info("Registered a TES job definition", extra={"job_definition": name, "image": image})
    return name


@router.post("/tasks", include_in_schema=False)  # TES 1.1 is its own document
def create_task():
    settings = _enabled_settings()
    caller = _caller()
    try:
        body = router.current_event.json_body
    except ValueError:  # the handler's deserializer turns every unreadable body into a JSONDecodeError
        raise refused("invalid_task", "body: not valid JSON", field="body") from None
    task = parse_task(body)
    check_task(task, settings)
    placed = task_resources(task, settings)
    queue, vcpus, memory_mib = placed.queue, placed.vcpus, placed.memory_mib
    rt = _runtime()
    input_bytes, runner_inputs = resolve_inputs(task, settings, rt.clients.s3)
    if input_bytes > placed.pool_settings.scratch_gib * GIB:
        # Placed again knowing the inputs' size: another pool's scratch may hold them.
        placed = task_resources(task, settings, input_bytes)
    image = task.executors[0].image
    job_definition = ensure_job_definition(rt.clients.batch, settings, image)

    job_id = new_job_id()
    created_at = utc_timestamp()
    prefix = names.output_prefix(settings.buckets.results, job_id)
    document = task.model_dump(mode="json", exclude_none=True)
    runner_task = tes_rules.encode_runner_task({**document, "inputs": runner_inputs})
    # `content` may hold secrets (Snakemake's job script exports storage keys): it goes only to
    # the task document in S3 (encrypted, under work/, which expires), never into the Batch job's
    # environment (DescribeJobs shows it) nor into the ledger, which keeps the task without it.
    runner_task_key = None
    if tes_rules.has_content(document) or len(runner_task.encode()) > tes_rules.INLINE_TASK_LIMIT:
        runner_task_key = tes_rules.task_key(job_id)
        runner_task_body, runner_task = runner_task.encode(), f"s3://{settings.buckets.inputs}/{runner_task_key}"
    environment = {
        runner_env.JOB_ID: job_id,
        runner_env.INPUTS: "[]",
        runner_env.OUTPUT_PREFIX: prefix,
        runner_env.TES_TASK: runner_task,
    }
    name = batch_job_name(task.name, "tes-task")
    request = batch_submit.submit_job_request(
        job_name=name, job_queue=placed.job_queue, job_definition=job_definition, environment=environment,
        vcpus=vcpus, memory_mib=memory_mib, lab=settings.lab)
    rt.ledger.create_pending(new_job_record(
        job_id=job_id, created_at=created_at, lab=settings.lab, pipeline=tes_rules.TES_PIPELINE, queue=queue,
        job_queue=placed.job_queue, job_definition=job_definition, vcpus=vcpus, memory_mib=memory_mib,
        output_prefix=prefix, name=task.name, batch_job_name=name, submitted_by=caller, inputs=[], parameters={},
        input_bytes=input_bytes,
        # As JSON text: DynamoDB takes no floats (ram_gb), and the document is only ever read whole.
        tes=document_text(task),
        tes_task_document=runner_task if runner_task_key is not None else None,
    ))
    logger.append_keys(job_id=job_id)

    document = None
    if runner_task_key is not None:
        document = StagedDocument("writing the task document to S3", settings.buckets.inputs, runner_task_key,
                                  runner_task_body)
    submit_recorded(job_id, request, ledger=rt.ledger, clients=rt.clients, document=document)
    return _answer(HTTPStatus.OK, m.CreateTaskResponse(id=job_id))


# --- read --------------------------------------------------------------------------------------

def _task_record(task_id: str) -> dict:
    record = _runtime().ledger.get(task_id) if re.match(JOB_ID_PATTERN, task_id) else None
    if record is None or record.get("pipeline") != tes_rules.TES_PIPELINE:
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_task", f"id: there is no task {task_id!r}", field="id")
    return record


def _view() -> str:
    view = (router.current_event.query_string_parameters or {}).get("view") or "MINIMAL"
    if view not in ("MINIMAL", "BASIC", "FULL"):
        raise refused("invalid_view", f"view: {view!r} (allowed: MINIMAL, BASIC, FULL)", field="view")
    return view


@router.get("/tasks/<task_id>", include_in_schema=False)  # TES 1.1 is its own document
def get_task(task_id: str):
    _enabled_settings()
    view = _view()
    rt = _runtime()
    record = _task_record(task_id)
    chain = recovery_chain(record, rt.ledger)
    manifests = [manifest(attempt, rt.clients.s3) for attempt in chain] if view != "MINIMAL" else None
    contents = input_contents(record, rt.clients.s3) if view == "FULL" and _submitted_by_caller(record) else None
    return _answer(HTTPStatus.OK, task_view(chain, view, manifests, contents))


def _submitted_by_caller(record: dict) -> bool:
    """`content` may hold its submitter's secrets (Snakemake's script can carry storage keys): FULL
    gives it back to them alone; other members of the lab see the task without it."""
    return bool(record.get("submitted_by")) and record.get("submitted_by") == _caller()


def _list_query() -> tuple[int, Optional[str], Optional[str], dict[str, str]]:
    """page_size, name_prefix, state and the tags asked for (tag_key zipped with tag_value)."""
    event = router.current_event
    query = event.query_string_parameters or {}
    multi = event.multi_value_query_string_parameters or {}
    try:
        page_size = int(query.get("page_size") or MAX_PAGE_SIZE)
    except ValueError:
        raise refused("invalid_page_size", "page_size: a whole number", field="page_size") from None
    if page_size < 1:
        raise refused("invalid_page_size", "page_size: at least 1", field="page_size")
    state = query.get("state") or None
    if state is not None and state not in FILTER_STATES:
        raise refused("invalid_state", f"state: {state!r} (allowed: {', '.join(FILTER_STATES)})", field="state")
    keys = multi.get("tag_key") or ([query["tag_key"]] if query.get("tag_key") is not None else [])
    values = multi.get("tag_value") or ([query["tag_value"]] if query.get("tag_value") is not None else [])
    tags = {key: (values[i] if i < len(values) else "") for i, key in enumerate(keys)}
    # Past the cap a page is served MAX_PAGE_SIZE tasks at a time (with a token while more match).
    return min(page_size, MAX_PAGE_SIZE), query.get("name_prefix") or None, state, tags


@router.get("/tasks", include_in_schema=False)  # TES 1.1 is its own document
def list_tasks():
    _enabled_settings()
    view = _view()
    page_size, name_prefix, state, tags = _list_query()
    rt = _runtime()
    chains: dict[str, list[dict]] = {}

    def keep(record: dict) -> bool:
        if record.get("recovered_from"):
            return False  # LabBatch's resubmission of a task: that task's own record follows it
        chain = recovery_chain(record, rt.ledger) if record.get("recovered_by") else [record]
        chains[record["job_id"]] = chain
        return matches(record, chain[-1], name_prefix=name_prefix, state=state, tags=tags)

    records, token = rt.ledger.find_jobs(
        pipeline=tes_rules.TES_PIPELINE, keep=keep, limit=page_size, name_prefix=name_prefix,
        next_token=(router.current_event.query_string_parameters or {}).get("page_token") or None,
        token_field="page_token")
    page = [chains[record["job_id"]] for record in records]
    manifests: list[Optional[list[Optional[dict]]]] = [None] * len(page)
    if view != "MINIMAL":
        # The logs GET tasks/{id} gives come from each attempt's manifest: read them together.
        attempts = [attempt for chain in page for attempt in chain]
        with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
            found = iter(list(pool.map(lambda attempt: manifest(attempt, rt.clients.s3), attempts)))
        manifests = [[next(found) for _ in chain] for chain in page]
    contents: list[Optional[dict[str, str]]] = [None] * len(page)
    if view == "FULL":
        caller = _caller()
        with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
            contents = list(pool.map(lambda chain: input_contents(chain[0], rt.clients.s3)
                                     if chain[0].get("submitted_by") == caller else None, page))
    tasks = [task_view(chain, view, chain_manifests, content)
             for chain, chain_manifests, content in zip(page, manifests, contents)]
    return _answer(HTTPStatus.OK, m.ListTasksResponse(tasks=tasks, next_page_token=token))


# --- cancel ------------------------------------------------------------------------------------

@router.post("/tasks/<task_action>", include_in_schema=False)  # TES 1.1 is its own document
def cancel_task(task_action: str):
    _enabled_settings()
    task_id, _, action = task_action.partition(":")
    if action != "cancel":
        raise ApiError(HTTPStatus.NOT_FOUND, "no_such_route", f"There is no POST {PREFIX}/tasks/{task_action}; "
                       f"cancel is POST {PREFIX}/tasks/{{id}}:cancel", field="path")
    caller = _caller()
    rt = _runtime()
    current = latest(_task_record(task_id), rt.ledger)
    if current["status"] in FINAL_STATUSES or current.get("cancel"):
        return _answer(HTTPStatus.OK, {})
    batch_job_id = current.get("batch_job_id")
    if not batch_job_id:
        raise ApiError(HTTPStatus.CONFLICT, "task_not_submitted_yet",
                       f"task {task_id} is still being submitted to AWS Batch; try again in a moment",
                       field="id", headers={"Retry-After": "1"})
    live = rt.clients.batch.describe_jobs(jobs=[batch_job_id]).get("jobs", [])
    if not live or live[0]["status"] in FINAL_STATUSES:
        return _answer(HTTPStatus.OK, {})
    action_done = stop_job(rt.clients.batch, batch_job_id, live[0]["status"],
                           f"Cancelled through LabBatch's TES endpoint by {caller}")
    rt.ledger.record_cancel(current["job_id"], {"requested_at": utc_timestamp(), "requested_by": caller,
                                                "action": action_done})
    return _answer(HTTPStatus.OK, {})
