"""How big every input is, before anything is downloaded: one LIST per directory, HEAD for the rest.

The free-space check needs every size before the first byte moves. A HEAD per object costs one
request each; a listing page describes up to 1,000 objects in one request, which matters when a
job has hundreds of small inputs in one place. A listing does not say everything a HEAD does
(no checksums, no encryption, no restore status), so an object is still HEADed when:

- the listing did not show it (not listed within the page budget, the LIST was refused, the
  object is missing: its HEAD then gives the 404/403 that names it);
- it is large enough to go through the bulk engine, which verifies against the HEAD's
  checksum (small objects are verified against their own GET response instead);
- its storage class may need a restore (the listing does not say whether it has one).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

from labbatch_contract.outcome import ExitCode

from .errors import RunnerError
from .runlog import RunnerLog
from .s3client import describe_client_error
from .s3uri import S3Uri

# HEADs and LISTs are small and latency-bound: many in flight hide the round trips.
_REQUEST_THREADS = 32
_ARCHIVED = {"GLACIER", "DEEP_ARCHIVE"}
# Below this many inputs in one directory, parallel HEADs cost no more wall time than a LIST.
LIST_MIN_OBJECTS = 3
LIST_PAGE_KEYS = 1000
# Listing pages are sequential: a directory much larger than the inputs taken from it would
# cost more round trips than the HEADs it saves, so the listing stops after this many pages
# beyond the minimum and whatever it has not seen is HEADed.
LIST_EXTRA_PAGES = 1


@dataclass(frozen=True)
class Sized:
    size: int
    head: dict[str, Any] | None  # None when the size came from a listing
    storage_class: str | None
    etag: str | None = None  # what the reference cache keys an object's version by


def size_inputs(s3: Any, uris: list[S3Uri], *, head_at_or_above: int, log: RunnerLog) -> list[Sized]:
    """Sizes in the order of `uris`; raises 65/68 naming the inputs that cannot be staged."""
    listed = _list_directories(s3, uris, log)
    # In input order, so that the first error reported is the first input at fault.
    to_head = [
        uri
        for uri in dict.fromkeys(uris)
        if uri not in listed or listed[uri].size >= head_at_or_above or listed[uri].storage_class in _ARCHIVED
    ]
    heads = dict(zip(to_head, _head_all(s3, to_head, log)))
    return [
        Sized(int(heads[uri]["ContentLength"]), heads[uri], heads[uri].get("StorageClass"), heads[uri].get("ETag"))
        if uri in heads else listed[uri]
        for uri in uris
    ]


def _directory(uri: S3Uri) -> tuple[str, str]:
    return uri.bucket, uri.key.rpartition("/")[0] + "/" if "/" in uri.key else ""


def _list_directories(s3: Any, uris: Iterable[S3Uri], log: RunnerLog) -> dict[S3Uri, Sized]:
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for uri in uris:
        groups[_directory(uri)].add(uri.key)
    worth_listing = [(bucket, prefix, keys) for (bucket, prefix), keys in groups.items() if len(keys) >= LIST_MIN_OBJECTS]
    if not worth_listing:
        return {}
    with ThreadPoolExecutor(min(_REQUEST_THREADS, len(worth_listing))) as pool:
        found = list(pool.map(lambda group: _list_one(s3, *group, log), worth_listing))
    return {uri: sized for part in found for uri, sized in part.items()}


def _list_one(s3: Any, bucket: str, prefix: str, wanted: set[str], log: RunnerLog) -> dict[S3Uri, Sized]:
    from botocore.exceptions import BotoCoreError, ClientError

    first, last = min(wanted), max(wanted)
    found: dict[S3Uri, Sized] = {}
    # StartAfter is exclusive: the first key less its last character sorts just before it.
    arguments: dict[str, Any] = {
        "Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "StartAfter": first[:-1], "MaxKeys": LIST_PAGE_KEYS,
    }
    budget = -(-len(wanted) // LIST_PAGE_KEYS) + LIST_EXTRA_PAGES
    try:
        for _ in range(budget):
            page = s3.list_objects_v2(**arguments)
            for item in page.get("Contents", []):
                if item["Key"] in wanted:
                    found[S3Uri(bucket, item["Key"])] = Sized(int(item["Size"]), None, item.get("StorageClass"),
                                                              item.get("ETag"))
            # General-purpose buckets list in UTF-8 byte order, which is str order: past the
            # last wanted key there is nothing more to find.
            contents = page.get("Contents", [])
            if len(found) == len(wanted) or not page.get("IsTruncated") or (contents and contents[-1]["Key"] >= last):
                break
            arguments["ContinuationToken"] = page["NextContinuationToken"]
    except (BotoCoreError, ClientError) as exc:
        # No s3:ListBucket, or a flaky listing: HEADs still size everything, and name the culprit.
        reason = describe_client_error(exc) if isinstance(exc, ClientError) else str(exc)
        log.info(f"stage_in: listing s3://{bucket}/{prefix} failed ({reason}); sizing its inputs with HEAD")
        return {}
    return found


def input_error(uri: S3Uri, exc: Exception, doing: str = "") -> RunnerError:
    """An S3 error about an input: 65 when it is missing or not ours to read, 68 otherwise."""
    from botocore.exceptions import ClientError

    reason = describe_client_error(exc) if isinstance(exc, ClientError) else str(exc)
    unavailable = isinstance(exc, ClientError) and reason.endswith(("(404)", "(403)"))
    return RunnerError(ExitCode.INPUT_UNAVAILABLE if unavailable else ExitCode.STAGE_IN_FAILED,
                       f"input {uri}: {doing}{reason}")


def _head(s3: Any, uri: S3Uri) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = s3.head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED")
    except (ClientError, BotoCoreError) as exc:
        raise input_error(uri, exc) from None
    if head.get("StorageClass") in _ARCHIVED and 'ongoing-request="false"' not in (head.get("Restore") or ""):
        raise RunnerError(ExitCode.INPUT_UNAVAILABLE, f"input {uri}: in {head['StorageClass']} and not restored")
    return head


def _head_all(s3: Any, uris: list[S3Uri], log: RunnerLog) -> list[dict[str, Any]]:
    if not uris:
        return []

    def head_or_error(uri: S3Uri) -> dict[str, Any] | RunnerError:
        try:
            return _head(s3, uri)
        except RunnerError as exc:
            return exc

    with ThreadPoolExecutor(min(_REQUEST_THREADS, len(uris))) as pool:
        heads = list(pool.map(head_or_error, uris))
    errors = [head for head in heads if isinstance(head, RunnerError)]
    if errors:
        for error in errors:
            log.error(error.message)
        first = errors[0]
        more = f" (and {len(errors) - 1} more inputs unavailable)" if len(errors) > 1 else ""
        raise RunnerError(first.code, first.message + more)
    return heads  # type: ignore[return-value]
