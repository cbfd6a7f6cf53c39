"""Where a job's inputs are, and whether they are there: s3:// URI rules and HEAD sizes."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import ClientError

from labbatch_api.errors import ApiError, refused
from labbatch_contract import references

MAX_KEY_BYTES = 1_024
HEAD_THREADS = 32
# With this many inputs under one folder, one listing (1,000 keys a page) sizes them faster than
# a HEAD each: a 10,000-sample submission needs 10 requests instead of 10,000.
LIST_AT_LEAST = 8
LIST_PAGE_SLACK = 5  # pages beyond the minimum before the rest fall back to HEAD


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_lab_uri(uri: str, field: str, allowed_buckets: tuple[str, ...]) -> S3Object:
    """The object a URI names, refused unless it is a plain object key in one of this lab's buckets.

    The runner turns keys into paths on the scratch volume, so `.` and `..` segments, empty
    segments and control characters are refused here rather than trusted there.
    """
    if not uri.startswith("s3://"):
        raise refused("invalid_s3_uri", f"{field}: {uri!r} is not an s3:// URI", field=field, uri=uri)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if bucket not in allowed_buckets:
        raise refused(
            "input_outside_lab",
            f"{field}: bucket {bucket!r} is not one of this lab's input buckets ({', '.join(allowed_buckets)})",
            field=field,
            uri=uri,
            allowed_buckets=list(allowed_buckets),
        )
    if not key:
        raise refused("invalid_s3_uri", f"{field}: {uri!r} names a bucket, not an object", field=field, uri=uri)
    if key.endswith("/"):
        raise refused(
            "invalid_s3_uri",
            f"{field}: {uri!r} is a prefix; list the objects themselves",
            field=field,
            uri=uri,
        )
    if not references.stageable_key(key):
        raise refused(
            "invalid_s3_uri",
            f"{field}: {uri!r} has an empty, '.' or '..' path segment",
            field=field,
            uri=uri,
        )
    if any(ord(ch) < 32 or 127 <= ord(ch) <= 159 for ch in key):  # C0, DEL and C1 (U+0085 is a newline)
        raise refused("invalid_s3_uri", f"{field}: the key has control characters", field=field, uri=uri)
    if len(key.encode()) > MAX_KEY_BYTES:
        raise refused("invalid_s3_uri", f"{field}: S3 keys are at most 1,024 bytes", field=field, uri=uri)
    return S3Object(bucket, key)


def parse_lab_prefix(uri: str, field: str, allowed_buckets: tuple[str, ...]) -> S3Object:
    """A folder (`s3://bucket/prefix/`) in one of this lab's buckets; the key always ends in '/'."""
    if not uri.startswith("s3://"):
        raise refused("invalid_s3_uri", f"{field}: {uri!r} is not an s3:// URI", field=field, uri=uri)
    folder = uri if uri.endswith("/") else uri + "/"
    bucket, _, key = folder[len("s3://"):].partition("/")
    if not key:
        raise refused("invalid_s3_uri", f"{field}: {uri!r} names a whole bucket; name a folder in it",
                      field=field, uri=uri)
    parse_lab_uri(f"s3://{bucket}/{key.rstrip('/')}", field, allowed_buckets)  # the same rules as an object's key
    return S3Object(bucket, key)


def list_prefix(s3_client, folder: S3Object, field: str, *, most: int) -> list[tuple[str, S3Object, int]]:
    """(path relative to the folder, object, size) of every object under it; refused when there is
    none, more than `most`, or a key the runner could not turn into a path."""
    found: list[tuple[str, S3Object, int]] = []
    try:
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=folder.bucket, Prefix=folder.key):
            for item in page.get("Contents", []):
                relative = item["Key"][len(folder.key):]
                if not relative or relative.endswith("/"):
                    continue  # a folder marker, not a file
                if not references.stageable_key(relative):
                    raise refused("invalid_s3_uri", f"{field}: {folder.uri}{relative!r} has an empty, '.' or '..' "
                                  "path segment", field=field, uri=folder.uri)
                found.append((relative, S3Object(folder.bucket, item["Key"]), int(item["Size"])))
                if len(found) > most:
                    raise refused("directory_too_large", f"{field}: {folder.uri} holds more than {most:,} objects; "
                                  "split it or name the files", field=field, uri=folder.uri, limit=most)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            raise refused("input_not_readable", f"{field}: LabBatch may not list {folder.uri} (access denied)",
                          field=field, uri=folder.uri)
        raise
    if not found:
        raise refused("input_not_found", f"{field}: there are no objects under {folder.uri}", field=field,
                      uri=folder.uri)
    return found


# What a HEAD found besides a size.
MISSING, DENIED = "missing", "denied"


def _head_sizes(s3_client, objects: list[S3Object]) -> list[int | str | ClientError]:
    """One HEAD per object, 32 at a time, in order: its size, MISSING (404), DENIED (403), or the
    error, which the caller raises when it comes to it (throttling that outlives the client's
    retries: the route answers 503), so that the first object at fault in order is the one named."""

    def head(obj: S3Object) -> int | str | ClientError:
        try:
            return int(s3_client.head_object(Bucket=obj.bucket, Key=obj.key)["ContentLength"])
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (403, 404):
                return DENIED if status == 403 else MISSING
            return exc

    if len(objects) <= 1:
        return [head(obj) for obj in objects]
    with ThreadPoolExecutor(max_workers=min(HEAD_THREADS, len(objects))) as pool:
        return list(pool.map(head, objects))


def _refuse_unreadable(obj: S3Object, field: str) -> ApiError:
    return refused("input_not_readable", f"{field}: LabBatch may not read {obj.uri} (access denied)",
                   field=field, uri=obj.uri)


def object_sizes(s3_client, objects: dict[S3Object, str]) -> dict[S3Object, int]:
    """Size of every object (a listing where it sizes many, else HEAD), refusing the first that is
    missing or unreadable.

    `objects` maps each distinct object to the request field that first named it, so a
    refusal points at what the caller wrote.
    """
    sizes = listed_sizes(s3_client, objects)
    rest = [obj for obj in objects if obj not in sizes]
    for obj, size in zip(rest, _head_sizes(s3_client, rest)):
        field = objects[obj]
        if isinstance(size, ClientError):
            raise size
        if size == MISSING:
            raise refused("input_not_found", f"{field}: {obj.uri} does not exist", field=field, uri=obj.uri)
        if size == DENIED:
            raise _refuse_unreadable(obj, field)
        sizes[obj] = size
    return sizes


def probe_sizes(s3_client, objects: dict[S3Object, str]) -> dict[S3Object, int | None]:
    """Size of each object, None where it does not exist (optional companions may be absent).
    `objects` maps each to the request field that named it; access denied is refused as for any input."""
    found: dict[S3Object, int | None] = {}
    for obj, size in zip(objects, _head_sizes(s3_client, list(objects))):
        if isinstance(size, ClientError):
            raise size
        if size == DENIED:
            raise _refuse_unreadable(obj, objects[obj])
        found[obj] = None if size == MISSING else size
    return found


def listed_sizes(s3_client, objects) -> dict[S3Object, int]:
    """Sizes from one listing per folder that holds many of the inputs.

    Only what the listing shows is sized here; anything else (a missing key, a folder with few
    inputs, a listing refused) is left to HEAD, which says exactly what is wrong with it.
    """
    folders: dict[tuple[str, str], dict[str, S3Object]] = defaultdict(dict)
    for obj in objects:
        folder = obj.key.rsplit("/", 1)[0] + "/" if "/" in obj.key else ""
        folders[(obj.bucket, folder)][obj.key] = obj
    sizes: dict[S3Object, int] = {}
    for (bucket, folder), wanted in folders.items():
        if len(wanted) < LIST_AT_LEAST:
            continue
        first, last = min(wanted), max(wanted)
        # A proper prefix of the first key sorts just before it.
        pages = s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=folder, StartAfter=first[:-1])
        try:
            for number, page in enumerate(pages):
                for item in page.get("Contents", []):
                    if item["Key"] in wanted:
                        sizes[wanted[item["Key"]]] = int(item["Size"])
                if page.get("Contents", [{}])[-1].get("Key", last) >= last or \
                        number >= len(wanted) // 1000 + LIST_PAGE_SLACK:
                    break
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") not in (403, 404):
                raise
    return sizes
