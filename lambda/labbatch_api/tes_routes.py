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
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from labbatch_api.errors import ApiError, iam_caller, refused
from labbatch_api.admission import MAX_FOLDER_OBJECTS
from labbatch_api.tes_resources import task_resources
from labbatch_api.batch_requests import batch_job_name, stop_job
from labbatch_api.input_objects import S3Object, list_prefix, object_sizes, parse_lab_prefix, parse_lab_uri
from labbatch_contract import batch_submit, names, outcome, runner_env
from labbatch_contract import tes as tes_rules
from labbatch_contract.ids import JOB_ID_PATTERN, new_job_id, utc_timestamp
from labbatch_contract.ledger import FINAL_STATUSES, new_job_record
from labbatch_contract.settings import LabSettings
from labbatch_api import tes_models as m
from labbatch_api import token_routes
from labbatch_api.submission import StagedDocument, submit_recorded  # the one way a recorded job reaches Batch

logger = Logger(service="labbatch-api", child=True)
router = APIGatewayRouter()
PREFIX = "/ga4gh/tes/v1"
GIB = 1024**3
MAX_CONTENT_BYTES = 256 * 1024  # all `content` inputs of a task together
# The task document as the ledger keeps it (UTF-8 JSON): a DynamoDB item holds at most 400 KB,
# and the record's other attributes take a few KB.
MAX_TASK_BYTES = 350_000
MAX_PAGE_SIZE = 100
# Manifests a list reads at once (one S3 GET each for the tasks that ended).
MANIFEST_READERS = 8
# A state filter may name any state TES 1.1 defines; those LabBatch never reports match nothing.
FILTER_STATES = (*tes_rules.STATES, "UNKNOWN", "PAUSED", "PREEMPTED")
MAX_RECOVERY_HOPS = 5
# A DIRECTORY input is a folder as a job's inputs and parameters may name one: the same bound.
MAX_DIRECTORY_OBJECTS = MAX_FOLDER_OBJECTS
WILDCARDS = set("*?[")
# What RegisterJobDefinition takes as an image (Batch: up to 255 letters, digits, hyphens,
# underscores, colons, periods, slashes and number signs; `@` for a digest): anything else would
# be refused by Batch after the task was admitted.
IMAGE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@#-]{0,254}$")


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

def _field(location: tuple) -> str:
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _not_utf8(value: Any, location: tuple = ()) -> Optional[tuple]:
    """Where the first string that UTF-8 cannot encode (a lone surrogate, which JSON's \\u escapes
    can spell) is, key or value: nothing LabBatch stores, submits or answers could hold it."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return location
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _not_utf8(item, (*location, i))
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _not_utf8(key, (*location, "[key]")) or _not_utf8(item, (*location, key))
            if found is not None:
                return found
    return None


def parse_task(body: Any) -> m.TesTaskRequest:
    where = _not_utf8(body)
    if where is not None:
        name = _field(tuple(part for part in where if part != "[key]"))
        what = "a key in it" if where[-1:] == ("[key]",) else "it"
        raise refused("invalid_task", f"{name}: {what} is not UTF-8 text (a lone surrogate)", field=name)
    try:
        return m.TesTaskRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _field(tuple(first.get("loc", ())))
        raise refused("invalid_task", f"{where}: {first.get('msg')}", field=where) from None


def check_task(task: m.TesTaskRequest, settings: LabSettings) -> None:
    """Everything about a task that needs no AWS call: images, paths, URLs, content size."""
    for i, executor in enumerate(task.executors):
        if not IMAGE_PATTERN.match(executor.image):
            raise refused("invalid_image", f"executors[{i}].image: {executor.image!r} is not a container image "
                          "reference (up to 255 letters, digits and . _ - / : @ #)", field=f"executors[{i}].image")
    images = sorted({e.image for e in task.executors})
    if len(images) > 1:
        raise refused(
            "executors_images_differ",
            f"executors: a LabBatch task runs its executors in one container, so they must name one image; "
            f"these name {', '.join(images)}. Send one task per image.", field="executors", images=images)
    image = images[0]
    if not tes_rules.image_allowed(image, settings.tes.allowed_images):
        raise refused(
            "image_not_allowed",
            f"executors[0].image: {image!r} is not allowed on lab {settings.lab}; tes.allowed_images allows "
            f"images starting with: {', '.join(settings.tes.allowed_images)}",
            field="executors[0].image", allowed=list(settings.tes.allowed_images))
    for i, executor in enumerate(task.executors):
        for attribute in ("workdir", "stdin", "stdout", "stderr"):
            value = getattr(executor, attribute)
            if value is not None:
                _absolute(value, f"executors[{i}].{attribute}")
    content_bytes = 0
    for i, item in enumerate(task.inputs):
        where = f"inputs[{i}]"
        _absolute(item.path, f"{where}.path")
        if (item.url is None) == (item.content is None):
            raise refused("invalid_input", f"{where}: give exactly one of url and content", field=where)
        if item.type == "DIRECTORY":
            if item.url is None:
                raise refused("invalid_input", f"{where}: a DIRECTORY input names an s3:// prefix in url, "
                              "not content", field=f"{where}.url")
            parse_lab_prefix(item.url, f"{where}.url", _readable_buckets(settings))
        elif item.content is not None:
            content_bytes += len(item.content.encode())
        else:
            parse_lab_uri(item.url, f"{where}.url", _readable_buckets(settings))
    if content_bytes > MAX_CONTENT_BYTES:
        raise refused("content_too_large", f"inputs: content inputs take {content_bytes:,} bytes; at most "
                      f"{MAX_CONTENT_BYTES:,}. Put larger files in the inputs bucket and name them by url.",
                      field="inputs", limit_bytes=MAX_CONTENT_BYTES)
    results = settings.buckets.results
    for i, item in enumerate(task.outputs):
        where = f"outputs[{i}]"
        _absolute(item.path, f"{where}.path")
        wanted = f"s3://{results}/{names.TES_OUTPUTS_PREFIX}"
        if not item.url.startswith(wanted) or len(item.url) == len(wanted) or ".." in item.url.split("/"):
            raise refused("output_outside_lab", f"{where}.url: {item.url!r}: task outputs go under {wanted}",
                          field=f"{where}.url", allowed_prefix=wanted)
        if WILDCARDS & set(item.path):
            if not item.path_prefix:
                raise refused("path_prefix_missing", f"{where}.path_prefix: a path with wildcards needs "
                              "path_prefix, the part stripped from each match", field=f"{where}.path_prefix")
            _absolute(item.path_prefix, f"{where}.path_prefix")
    for i, volume in enumerate(task.volumes or []):
        _absolute(volume, f"volumes[{i}]")
    size = len(document_text(task).encode())
    if size > MAX_TASK_BYTES:
        parts = task.model_dump(mode="json", exclude_none=True)
        largest = max(parts, key=lambda key: len(json.dumps(parts[key], ensure_ascii=False).encode()))
        raise refused("task_too_large", f"{largest}: the task takes {size:,} bytes as JSON, {largest} most of them; "
                      f"at most {MAX_TASK_BYTES:,}. Put large files in the inputs bucket and name them by url.",
                      field=largest, size_bytes=size, limit_bytes=MAX_TASK_BYTES)


def document_text(task: m.TesTaskRequest) -> str:
    """The task as the ledger keeps it: without its inputs' `content` (which may hold secrets; the
    runner's task document in S3 has it). Not ASCII-escaped: DynamoDB counts UTF-8 bytes, and \\u
    escapes would triple the size of non-ASCII content."""
    return json.dumps(tes_rules.without_content(task.model_dump(mode="json", exclude_none=True)),
                      separators=(",", ":"), ensure_ascii=False)


def _readable_buckets(settings: LabSettings) -> tuple[str, ...]:
    return (settings.buckets.inputs, settings.buckets.references, settings.buckets.results)


def _absolute(path: str, where: str) -> None:
    if not path.startswith("/") or "\x00" in path or any(part == ".." for part in path.split("/")):
        raise refused("path_not_absolute", f"{where}: {path!r} must be an absolute path without '..'", field=where)
    if path.startswith(("/opt/labbatch/", "/scratch/")) or path in ("/", "/opt/labbatch", "/scratch"):
        raise refused("path_reserved", f"{where}: {path!r} is LabBatch's (the runner and scratch are mounted "
                      "there); use another path", field=where)


def _resolve_inputs(task: m.TesTaskRequest, settings: LabSettings, s3) -> tuple[int, list[dict]]:
    """The inputs as the runner stages them, and their size. A DIRECTORY input stays one input, its
    url a folder (`s3://bucket/prefix/`), which the runner stages as it stages a pipeline's folder;
    it is listed now, so that the scratch check counts its objects and an empty or missing folder
    is refused before anything runs."""
    objects: dict[S3Object, str] = {}
    files: list[dict] = []
    listed_bytes = 0
    for i, item in enumerate(task.inputs):
        where = f"inputs[{i}].url"
        if item.type == "DIRECTORY":
            folder = parse_lab_prefix(item.url, where, _readable_buckets(settings))
            listed_bytes += sum(size for _, _, size in list_prefix(s3, folder, where, most=MAX_DIRECTORY_OBJECTS))
            files.append({**item.model_dump(mode="json", exclude_none=True), "url": folder.uri})
            continue
        if item.url is not None:
            objects.setdefault(parse_lab_uri(item.url, where, _readable_buckets(settings)), where)
        files.append(item.model_dump(mode="json", exclude_none=True))
    total = listed_bytes + (sum(object_sizes(s3, objects).values()) if objects else 0)
    return total, files


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
    input_bytes, runner_inputs = _resolve_inputs(task, settings, rt.clients.s3)
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


def recovery_chain(record: dict, ledger) -> list[dict]:
    """The task's record and the records LabBatch resubmitted it as (after a spot reclaim, an OOM
    kill or an infrastructure failure), in order: the last one says where the task is now."""
    chain = [record]
    for _ in range(MAX_RECOVERY_HOPS):
        following = chain[-1].get("recovered_by")
        nxt = ledger.get(following) if following else None
        if nxt is None:
            break
        chain.append(nxt)
    return chain


def latest(record: dict, ledger) -> dict:
    return recovery_chain(record, ledger)[-1]


def _stored_json(s3, uri: str) -> Optional[dict]:
    """A JSON object LabBatch wrote to S3, or None when it is gone (expired) or unreadable."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        stored = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (ClientError, BotoCoreError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def _manifest(record: dict, s3) -> Optional[dict]:
    if record.get("status") not in FINAL_STATUSES:
        return None
    return _stored_json(s3, outcome.manifest_key(record["output_prefix"]))


def input_contents(record: dict, s3) -> dict[str, str]:
    """The `content` of the task's inputs, by path, from its task document in S3 (the ledger keeps
    none); empty once work/ has expired it or when it cannot be read."""
    uri = record.get("tes_task_document")
    stored = _stored_json(s3, uri) if uri else None
    return {i["path"]: i["content"] for i in (stored or {}).get("inputs", []) if isinstance(i.get("content"), str)}


def _task_log(attempt: dict, following: Optional[dict], state: str, first: dict, full: bool,
              manifest: Optional[dict]) -> m.TaskLog:
    """One attempt of the task (one record of its recovery chain) as a TES TaskLog."""
    tes_part = (manifest or {}).get("tes") or {}
    executor_logs = [m.ExecutorLog(**{k: v for k, v in e.items()
                                      if k in ("start_time", "end_time", "exit_code")
                                      or (full and k in ("stdout", "stderr"))})
                     for e in tes_part.get("executors", [])]
    outputs = [m.OutputFileLog(url=o["url"], path=o["path"], size_bytes=str(o["size_bytes"]))
               for o in tes_part.get("outputs", [])]
    system_logs = None
    if full and (following is not None or state in ("SYSTEM_ERROR", "CANCELED", "EXECUTOR_ERROR")):
        system_logs = [f"LabBatch failure class: {attempt.get('failure') or 'unknown'}",
                       f"reason: {attempt.get('status_reason') or ''}"]
        # Batch's job reason for a task that never started is only "Task failed to start"; the
        # container's (CannotPullContainerError: ...) is in the attempts, and engines show only this.
        for number, tried in enumerate(attempt.get("attempts") or [], 1):
            if tried.get("reason") and tried["reason"] != attempt.get("status_reason"):
                system_logs.append(f"Batch attempt {number}: {tried['reason']}")
        error = (manifest or {}).get("error")
        if error:
            system_logs.append(f"runner: {error.get('code')}: {error.get('message')}")
        if following is not None:
            kind = (following.get("recovery") or {}).get("kind") or "recovery"
            system_logs.append(f"LabBatch resubmitted the task ({kind}) as {following['job_id']}")
    metadata = {"labbatch_job_id": attempt["job_id"]}
    if attempt.get("batch_job_id"):
        metadata["batch_job_id"] = attempt["batch_job_id"]
    if attempt is not first:
        metadata["recovered_from"] = first["job_id"]
    return m.TaskLog(logs=executor_logs, outputs=outputs, system_logs=system_logs, metadata=metadata,
                     start_time=attempt.get("started_at"), end_time=attempt.get("stopped_at"))


def task_view(chain: list[dict], view: str, manifests: Optional[list[Optional[dict]]] = None,
              contents: Optional[dict[str, str]] = None) -> m.TaskOut:
    """A task (its recovery chain of ledger records) in the view asked for. MINIMAL: id and state
    only; `logs` holds one TaskLog per attempt that started or ended, oldest first, each from its
    own manifest (`manifests`, by position); FULL puts back the inputs' `content` from `contents`,
    by path."""
    record, current = chain[0], chain[-1]
    state = tes_rules.task_state(current)
    if view == "MINIMAL":
        return m.TaskOut(id=record["job_id"], state=state)
    doc = task_document(record)
    full = view == "FULL"
    # Records written before content left the ledger still hold it there: only FULL, and only with
    # `contents` (given to the task's submitter alone), shows it.
    inputs = [m.InputOut(**{k: v for k, v in i.items() if k != "content"},
                         **({"content": contents.get(i["path"], i.get("content"))}
                            if full and contents is not None and not i.get("url") else {}))
              for i in doc.get("inputs", [])]
    manifests = manifests or [None] * len(chain)
    task_logs = [_task_log(attempt, chain[i + 1] if i + 1 < len(chain) else None, state, record, full, manifests[i])
                 for i, attempt in enumerate(chain)
                 if attempt.get("started_at") or attempt.get("status") in FINAL_STATUSES] or None
    return m.TaskOut(
        id=record["job_id"], state=state, name=doc.get("name"), description=doc.get("description"),
        inputs=inputs or None, outputs=[m.OutputOut(**o) for o in doc.get("outputs", [])] or None,
        resources=m.ResourcesOut(**doc["resources"]) if doc.get("resources") else None,
        executors=[m.ExecutorOut(**e) for e in doc.get("executors", [])],
        volumes=doc.get("volumes"), tags=doc.get("tags"), logs=task_logs, creation_time=record.get("created_at"))


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
    manifests = [_manifest(attempt, rt.clients.s3) for attempt in chain] if view != "MINIMAL" else None
    contents = input_contents(record, rt.clients.s3) if view == "FULL" and _submitted_by_caller(record) else None
    return _answer(HTTPStatus.OK, task_view(chain, view, manifests, contents))


def _submitted_by_caller(record: dict) -> bool:
    """`content` may hold its submitter's secrets (Snakemake's script can carry storage keys): FULL
    gives it back to them alone; other members of the lab see the task without it."""
    return bool(record.get("submitted_by")) and record.get("submitted_by") == _caller()


def task_document(record: dict) -> dict:
    return json.loads(record.get("tes") or "{}")


def matches(record: dict, current: dict, *, name_prefix: Optional[str], state: Optional[str],
            tags: dict[str, str]) -> bool:
    """TES 1.1's list filters; a tag asked for with an empty value matches any value."""
    doc = task_document(record)
    if name_prefix and not (doc.get("name") or "").startswith(name_prefix):
        return False
    if state and tes_rules.task_state(current) != state:
        return False
    task_tags = doc.get("tags") or {}
    for key, value in tags.items():
        if key not in task_tags or (value != "" and task_tags[key] != value):
            return False
    return True


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
            found = iter(list(pool.map(lambda attempt: _manifest(attempt, rt.clients.s3), attempts)))
        manifests = [[next(found) for _ in chain] for chain in page]
    contents: list[Optional[dict[str, str]]] = [None] * len(page)
    if view == "FULL":
        caller = _caller()
        with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
            contents = list(pool.map(lambda chain: input_contents(chain[0], rt.clients.s3)
                                     if chain[0].get("submitted_by") == caller else None, page))
    tasks = [task_view(chain, view, manifest, content)
             for chain, manifest, content in zip(page, manifests, contents)]
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
