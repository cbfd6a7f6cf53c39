"""`labbatch logs JOB [--child N] [--follow]`: a job's log lines from the lab's log group.

Which streams: the ledger record's `attempts[].log_stream` (every attempt, oldest first) and
its `log` (the current one). An array job's children have no stream in the parent's record; a
child's come from Batch (`DescribeJobs` on `<batch job id>:<N>`, every attempt), with the
caller's credentials (or the local lab's Batch endpoint). If Batch cannot say (no
`batch:DescribeJobs`, or Batch has forgotten the job), the child's runner logs in S3
(`<prefix><sample>/logs/tool.log` and `runner.log`, named by its manifest) are shown instead.

Lines go to stdout as the tool and the runner wrote them; which attempt and stream each block
comes from goes to stderr, so `labbatch logs J | grep` sees only the job's own lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labbatch.client.sdk import FINAL_STATUSES, LabBatchError
from labbatch.client.labdata import LabData, aws_code, aws_reason, split_uri
from labbatch_contract import outcome

FOLLOW_INTERVAL_SECONDS = 2.0


def logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", help="a job id (j-...)")
    parser.add_argument("--child", type=int, metavar="N", help="an array job's child (its index, from 0)")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new lines until the job (or child) ends")


@dataclass
class Stream:
    group: str
    name: str
    attempt: int | None
    token: str | None = None
    printed: int = 0
    announced: bool = False


@dataclass
class Source:
    """The streams of one job or child, and whether it has ended."""

    label: str
    status: str | None
    streams: list[Stream] = field(default_factory=list)
    # Only when Batch cannot name a child's streams: the runner's logs in S3.
    s3_logs: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def run_logs(args: argparse.Namespace) -> int:
    data = LabData.from_args(args)
    logs = data.client("logs")
    streams: dict[str, Stream] = {}
    while True:
        source = _source(data, args)
        for stream in source.streams:
            known = streams.setdefault(stream.name, stream)
            _print_new(logs, known, several=len(source.streams) > 1, as_json=args.json)
        if not source.streams and source.s3_logs:
            _print_s3_logs(data, source)
            return 0
        if not args.follow:
            if not source.streams and source.final:
                raise LabBatchError("no_log", f"{source.label} ended {source.status} without starting a container"
                                    f"{f' ({source.reason})' if source.reason else ''}, so it has no log "
                                    f"(labbatch why {args.job_id})")
            if not source.streams:
                raise LabBatchError("no_log_yet", f"{source.label} is {source.status} and has not started, so it has "
                                    f"no log yet (`labbatch logs {args.job_id}"
                                    f"{f' --child {args.child}' if args.child is not None else ''} --follow` waits)")
            return 0
        if source.final:
            # One more read after the end: the last lines may land just after the status.
            time.sleep(FOLLOW_INTERVAL_SECONDS / 2)
            for stream in streams.values():
                _print_new(logs, stream, several=len(streams) > 1, as_json=args.json)
            return 0
        time.sleep(FOLLOW_INTERVAL_SECONDS)


def _source(data: LabData, args: argparse.Namespace) -> Source:
    with data.api() as api:
        record = api.get(args.job_id)
    array_size = record.get("array_size")
    if args.child is None:
        if array_size:
            raise LabBatchError("array_job", f"{args.job_id} is an array job of {array_size} children, each with its "
                                f"own log: name one with --child N (0 to {array_size - 1})")
        group = (record.get("log") or {}).get("group") or data.log_group(record.get("pipeline"))
        names: list[tuple[str, int | None]] = []
        for number, attempt in enumerate(record.get("attempts") or [], start=1):
            if attempt.get("log_stream"):
                names.append((attempt["log_stream"], number))
        current = (record.get("log") or {}).get("stream")
        if current and current not in {n for n, _ in names}:
            names.append((current, len(names) + 1))
        return Source(args.job_id, record.get("status"), [Stream(group, n, a) for n, a in names],
                      reason=record.get("status_reason"))
    if not array_size:
        raise LabBatchError("not_an_array_job", f"{args.job_id} is not an array job: leave out --child")
    if not 0 <= args.child < array_size:
        raise LabBatchError("no_such_child", f"{args.job_id} has children 0 to {array_size - 1}, not {args.child}")
    return _child_source(data, record, args.child)


def _child_source(data: LabData, record: Mapping[str, Any], index: int) -> Source:
    label = f"{record['job_id']} child {index}"
    group = (record.get("log") or {}).get("group") or data.log_group(record.get("pipeline"))
    batch_id = record.get("batch_job_id")
    why = "the job never reached Batch" if not batch_id else None
    if batch_id:
        try:
            jobs = data.client("batch").describe_jobs(jobs=[f"{batch_id}:{index}"]).get("jobs") or []
        except Exception as error:  # noqa: BLE001 - no batch:DescribeJobs, unreachable, ...
            jobs, why = [], f"Batch's DescribeJobs failed: {aws_reason(error)}"
        if jobs:
            job = jobs[0]
            options = ((job.get("container") or {}).get("logConfiguration") or {}).get("options") or {}
            group = options.get("awslogs-group") or group
            names: list[str] = []
            for attempt in job.get("attempts") or []:
                name = (attempt.get("container") or {}).get("logStreamName")
                if name and name not in names:
                    names.append(name)
            current = (job.get("container") or {}).get("logStreamName")
            if current and current not in names:
                names.append(current)
            return Source(label, job.get("status"), [Stream(group, n, i) for i, n in enumerate(names, start=1)],
                          reason=job.get("statusReason"))
        why = why or "Batch no longer knows the job"
    # Batch cannot say: the runner's own copy in S3, when the child has run.
    return _child_s3_source(data, record, index, label, why)


def _child_s3_source(data: LabData, record: Mapping[str, Any], index: int, label: str, why: str) -> Source:
    s3 = data.client("s3")
    sample = None
    if record.get("samples_uri"):
        bucket, key = split_uri(record["samples_uri"])
        try:
            sample = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())[index]["name"]
        except Exception as error:  # noqa: BLE001
            raise LabBatchError("no_log", f"cannot find {label}'s log: {why}, and its sample list "
                                f"{record['samples_uri']} cannot be read ({aws_reason(error)})") from None
    if sample is None:
        raise LabBatchError("no_log", f"cannot find {label}'s log: {why}")
    prefix = f"{record['output_prefix']}{sample}/"
    uris = [prefix + outcome.TOOL_LOG, prefix + outcome.RUNNER_LOG]
    print(f"labbatch: {why}; showing {label}'s ({sample}) runner logs from S3 instead", file=sys.stderr)
    return Source(label, record.get("status") if record.get("status") in FINAL_STATUSES else None, [], uris)


def _print_s3_logs(data: LabData, source: Source) -> None:
    s3 = data.client("s3")
    found = False
    for uri in source.s3_logs:
        bucket, key = split_uri(uri)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:  # noqa: BLE001
            print(f"labbatch: {uri}: {aws_reason(error)}", file=sys.stderr)
            continue
        found = True
        print(f"== {uri} ==", file=sys.stderr)
        sys.stdout.write(body.decode("utf-8", "replace"))
    if not found:
        raise LabBatchError("no_log", f"{source.label} has no log in Batch or S3 yet")


def _print_new(logs: Any, stream: Stream, *, several: bool, as_json: bool) -> None:
    """Prints the stream's events not printed yet, following its forward token."""
    while True:
        kwargs: dict[str, Any] = {"logGroupName": stream.group, "logStreamName": stream.name}
        kwargs.update({"nextToken": stream.token} if stream.token else {"startFromHead": True})
        try:
            page = logs.get_log_events(**kwargs)
        except Exception as error:  # noqa: BLE001
            if aws_code(error) == "ResourceNotFoundException":
                return  # not created yet: Batch creates the stream when the container starts
            raise LabBatchError("logs_unreadable", f"{stream.group} {stream.name}: {aws_reason(error)} (your "
                                "credentials need logs:GetLogEvents on the lab's log group)") from None
        events = page.get("events") or []
        if events and not stream.announced and several and not as_json:
            print(f"== attempt {stream.attempt}: {stream.group} {stream.name} ==", file=sys.stderr)
        if events:
            stream.announced = True
        for event in events:
            if as_json:
                sys.stdout.write(json.dumps({"attempt": stream.attempt, "stream": stream.name,
                                             "timestamp": event.get("timestamp"), "message": event.get("message")})
                                 + "\n")
            else:
                message = str(event.get("message", ""))
                sys.stdout.write(message if message.endswith("\n") else message + "\n")
        sys.stdout.flush()
        stream.printed += len(events)
        token = page.get("nextForwardToken")
        if not token or token == stream.token:
            stream.token = token
            return
        stream.token = token
        if not events:
            return
