"""What a TES task must be before it is admitted: a valid TES 1.1 document in UTF-8, one allowed
image for its executors, absolute paths clear of LabBatch's own, inputs and outputs in the lab's
buckets, and a size the ledger can hold. All of it needs no AWS call, except the inputs' sizes."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from pydantic import ValidationError

from labbatch_api import tes_models as m
from labbatch_api.admission import MAX_FOLDER_OBJECTS
from labbatch_api.errors import refused
from labbatch_api.input_objects import S3Object, list_prefix, object_sizes, parse_lab_prefix, parse_lab_uri
from labbatch_contract import names
from labbatch_contract import tes as tes_rules
from labbatch_contract.settings import LabSettings

MAX_CONTENT_BYTES = 256 * 1024  # all `content` inputs of a task together
# The task document as the ledger keeps it (UTF-8 JSON): a DynamoDB item holds at most 400 KB,
# and the record's other attributes take a few KB.
MAX_TASK_BYTES = 350_000
# A DIRECTORY input is a folder as a job's inputs and parameters may name one: the same bound.
MAX_DIRECTORY_OBJECTS = MAX_FOLDER_OBJECTS
WILDCARDS = set("*?[")
# What RegisterJobDefinition takes as an image (Batch: up to 255 letters, digits, hyphens,
# underscores, colons, periods, slashes and number signs; `@` for a digest): anything else would
# be refused by Batch after the task was admitted.
IMAGE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@#-]{0,254}$")


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


def resolve_inputs(task: m.TesTaskRequest, settings: LabSettings, s3) -> tuple[int, list[dict]]:
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

