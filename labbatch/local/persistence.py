"""A local lab's data kept on disk across restarts (`labbatch local --data-dir DIR`).

The emulator holds everything in memory; this saves what a scientist would miss after a restart:
the objects of the lab's buckets (latest versions), the job ledger's items, and the job log
group's events. Restored into a fresh emulator at start, before the API answers; saved every
few seconds while the lab runs (only what changed) and once more when it stops, after its jobs
have stopped, so a SIGTERM loses nothing. Every file is written beside its final name and
renamed into place, so a lab killed mid-save leaves the previous save whole.

Layout of DIR:
    lab.json                     {"lab": name, "format": 1}: a folder holds one lab's data
    s3/<kind>/index.json         key -> {file, etag, size, content_type}
    s3/<kind>/objects/<sha256>   the object's bytes (keys are hashed: any key is a safe name)
    ledger.jsonl                 one DynamoDB item (its typed JSON) a line
    logs.jsonl                   {"stream", "timestamp", "message"} a line

Jobs that were not finished when the lab stopped stopped with it: after a restore their records
say so (FAILED, class `infrastructure`), instead of showing RUNNING for ever.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from labbatch_contract.ids import utc_timestamp
from labbatch_contract.failures import INFRASTRUCTURE
from labbatch_contract.ledger import FINAL_STATUSES, PROGRESS_FINAL, RECORD_TYPE_JOB, expression_values, from_item

FORMAT = 1
AUTOSAVE_SECONDS = 5.0
MAX_EVENT_AGE_DAYS = 14  # PutLogEvents refuses older events
STOPPED_REASON = "The local lab stopped while this job was {status}; jobs do not survive a restart of local mode"


def _children_stopped(children: dict[str, int]) -> dict[str, int]:
    """Child counts once the lab stopped: every child that had not finished failed with it."""
    unfinished = sum(n for status, n in children.items() if status not in FINAL_STATUSES)
    counts = {status: n for status, n in children.items() if status in FINAL_STATUSES}
    counts["FAILED"] = counts.get("FAILED", 0) + unfinished
    return counts


def _refused_indexes(info: dict[str, int], count: int) -> set[int]:
    """The batch positions PutLogEvents' rejectedLogEventsInfo names (too old, expired, too new)."""
    refused = set(range(0, min(info.get("tooOldLogEventEndIndex", 0), count)))
    refused |= set(range(0, min(info.get("expiredLogEventEndIndex", 0), count)))
    if "tooNewLogEventStartIndex" in info:
        refused |= set(range(info["tooNewLogEventStartIndex"], count))
    return refused


class DataDirError(ValueError):
    """The folder cannot hold this lab's data (another lab's, or not a LabBatch data folder)."""


@dataclass(frozen=True)
class Restored:
    objects: int
    ledger_items: int
    log_events: int
    stopped_jobs: int


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


class LabData:
    def __init__(self, directory: Path, *, lab: str, buckets: dict[str, str], table: str, log_group: str,
                 client: Callable[[str], Any]) -> None:
        self.directory = directory
        self._lab, self._buckets, self._table, self._log_group = lab, buckets, table, log_group
        self._client = client
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unrestorable: list[dict[str, Any]] = []  # saved log events the emulator would not take back
        self._written: dict[Path, str] = {}  # sha256 of what each file last got: an idle lab writes nothing

    # --- the folder --------------------------------------------------------------------------

    def claim(self) -> bool:
        """Make the folder this lab's; True when it already held this lab's data."""
        marker = self.directory / "lab.json"
        if marker.is_file():
            try:
                owner = json.loads(marker.read_text())
            except ValueError:
                raise DataDirError(f"{self.directory}: lab.json is not valid JSON; not a LabBatch data folder") from None
            if owner.get("lab") != self._lab:
                raise DataDirError(f"{self.directory} holds the data of lab {owner.get('lab')!r}, not {self._lab!r}; "
                                   "give each lab its own --data-dir")
            return True
        if self.directory.exists() and any(self.directory.iterdir()):
            raise DataDirError(f"{self.directory} is not empty and holds no LabBatch lab data; "
                               "give an empty or new folder")
        _write_atomically(marker, json.dumps({"lab": self._lab, "format": FORMAT}).encode())
        return False

    # --- restore -----------------------------------------------------------------------------

    def restore(self) -> Restored:
        try:
            objects = sum(self._restore_bucket(kind, bucket) for kind, bucket in self._buckets.items())
            items = self._restore_ledger()
            events = self._restore_logs()
        except (ValueError, KeyError, OSError) as exc:
            raise DataDirError(f"{self.directory}: a saved file is unreadable ({type(exc).__name__}: {exc}); "
                               "nothing was changed in it") from None
        stopped = self._mark_unfinished_jobs_stopped()
        return Restored(objects, items, events, stopped)

    def _restore_bucket(self, kind: str, bucket: str) -> int:
        index = self._index(kind)
        s3 = self._client("s3")
        for key, entry in index.items():
            extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
            s3.put_object(Bucket=bucket, Key=key, Body=(self._objects(kind) / entry["file"]).read_bytes(), **extra)
            entry["etag"] = s3.head_object(Bucket=bucket, Key=key)["ETag"]
        # The emulator's ETags now: the next save copies nothing it has.
        _write_atomically(self.directory / "s3" / kind / "index.json", json.dumps(index).encode())
        return len(index)

    def _restore_ledger(self) -> int:
        path = self.directory / "ledger.jsonl"
        if not path.is_file():
            return 0
        dynamodb = self._client("dynamodb")
        count = 0
        for line in path.read_text().splitlines():
            if line.strip():
                dynamodb.put_item(TableName=self._table, Item=json.loads(line))
                count += 1
        return count

    def _restore_logs(self) -> int:
        path = self.directory / "logs.jsonl"
        if not path.is_file():
            return 0
        by_stream: dict[str, list[dict[str, Any]]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                by_stream.setdefault(event["stream"], []).append(
                    {"timestamp": event["timestamp"], "message": event["message"]})
        logs = self._client("logs")
        restored = 0
        # CloudWatch Logs (and the emulator, which may drop them without a word) take no event older
        # than 14 days: those stay on disk, added back at every save, instead of vanishing.
        oldest_accepted = int(time.time() * 1000) - (MAX_EVENT_AGE_DAYS * 24 - 1) * 3600 * 1000
        for stream in list(by_stream):
            too_old = [e for e in by_stream[stream] if e["timestamp"] < oldest_accepted]
            self._unrestorable += [{"stream": stream, **e} for e in too_old]
            by_stream[stream] = [e for e in by_stream[stream] if e["timestamp"] >= oldest_accepted]
            if not by_stream[stream]:
                del by_stream[stream]
        for stream, events in by_stream.items():
            logs.create_log_stream(logGroupName=self._log_group, logStreamName=stream)
            for start in range(0, len(events), 1000):  # PutLogEvents takes 10,000; stay well under 1 MB
                batch = events[start:start + 1000]
                answer = logs.put_log_events(logGroupName=self._log_group, logStreamName=stream, logEvents=batch)
                # Anything else it refuses (expired by the group's retention, too new) stays on disk too.
                refused = _refused_indexes(answer.get("rejectedLogEventsInfo") or {}, len(batch))
                self._unrestorable += [{"stream": stream, **batch[i]} for i in sorted(refused)]
                restored += len(batch) - len(refused)
        return restored

    def _mark_unfinished_jobs_stopped(self) -> int:
        dynamodb = self._client("dynamodb")
        stopped = 0
        for item in self._scan():
            status = item.get("status", {}).get("S")
            if item.get("record_type", {}).get("S") != RECORD_TYPE_JOB or status in FINAL_STATUSES:
                continue
            now = utc_timestamp()
            values = {":failed": "FAILED", ":reason": STOPPED_REASON.format(status=status),
                      ":failure": INFRASTRUCTURE, ":final": PROGRESS_FINAL, ":now": now}
            update = ("SET #status = :failed, status_reason = :reason, failure = :failure, "
                      "progress = :final, stopped_at = :now, updated_at = :now")
            children = from_item({"c": item["children"]})["c"] if "children" in item else None
            if isinstance(children, dict):
                # An array parent's unfinished children stopped with it: its counts say so too.
                values[":children"] = _children_stopped(children)
                update += ", children = :children"
            dynamodb.update_item(
                TableName=self._table, Key={"job_id": item["job_id"]}, UpdateExpression=update,
                ExpressionAttributeNames={"#status": "status"}, ExpressionAttributeValues=expression_values(values))
            stopped += 1
        return stopped

    # --- save --------------------------------------------------------------------------------

    def save(self) -> None:
        with self._lock:
            for kind, bucket in self._buckets.items():
                self._save_bucket(kind, bucket)
            lines = [json.dumps(item, sort_keys=True) for item in self._scan()]
            self._write_if_changed(self.directory / "ledger.jsonl", "".join(line + "\n" for line in lines).encode())
            self._save_logs()

    def _save_bucket(self, kind: str, bucket: str) -> None:
        s3 = self._client("s3")
        index, current = self._index(kind), {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for summary in page.get("Contents", []):
                key, etag = summary["Key"], summary["ETag"]
                entry = index.get(key)
                if entry is None or entry.get("etag") != etag:
                    answer = s3.get_object(Bucket=bucket, Key=key)
                    entry = {"file": hashlib.sha256(key.encode()).hexdigest(), "etag": answer["ETag"],
                             "size": answer["ContentLength"], "content_type": answer.get("ContentType")}
                    _write_atomically(self._objects(kind) / entry["file"], answer["Body"].read())
                current[key] = entry
        self._write_if_changed(self.directory / "s3" / kind / "index.json", json.dumps(current).encode())
        kept = {entry["file"] for entry in current.values()}
        for stale in self._objects(kind).glob("*"):
            if stale.name not in kept:
                stale.unlink(missing_ok=True)

    def _save_logs(self) -> None:
        logs = self._client("logs")
        lines = []
        for page in logs.get_paginator("describe_log_streams").paginate(logGroupName=self._log_group):
            for stream in page.get("logStreams", []):
                name = stream["logStreamName"]
                token = None
                while True:
                    kwargs = {"nextToken": token} if token else {}
                    answer = logs.get_log_events(logGroupName=self._log_group, logStreamName=name,
                                                 startFromHead=True, **kwargs)
                    lines += [json.dumps({"stream": name, "timestamp": e["timestamp"], "message": e["message"]})
                              for e in answer["events"]]
                    if not answer["events"] or answer.get("nextForwardToken") in (None, token):
                        break
                    token = answer["nextForwardToken"]
        kept = [json.dumps(event) for event in self._unrestorable]
        self._write_if_changed(self.directory / "logs.jsonl", "".join(line + "\n" for line in kept + lines).encode())

    # --- while the lab runs ------------------------------------------------------------------

    def start_autosave(self, every: float = AUTOSAVE_SECONDS) -> None:
        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.save()
                except Exception as exc:  # the final save at stop says it again if it persists
                    print(f"labbatch local: saving to {self.directory} failed: {exc}", file=sys.stderr,
                          flush=True)

        self._thread = threading.Thread(target=loop, name="labbatch-data-dir", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop saving in the background, then save once more (the lab's jobs have stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.save()

    # --- helpers -----------------------------------------------------------------------------

    def _write_if_changed(self, path: Path, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        if self._written.get(path) != digest or not path.is_file():
            _write_atomically(path, data)
            self._written[path] = digest

    def _index(self, kind: str) -> dict[str, dict[str, Any]]:
        path = self.directory / "s3" / kind / "index.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _objects(self, kind: str) -> Path:
        return self.directory / "s3" / kind / "objects"

    def _scan(self) -> list[dict[str, Any]]:
        dynamodb = self._client("dynamodb")
        items: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=self._table, ConsistentRead=True):
            items += page.get("Items", [])
        return items
