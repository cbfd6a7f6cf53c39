"""The `labbatch` command.

Each sub-command is one small function `run(args) -> exit code`, registered in COMMANDS with
the function that declares its arguments. Expected failures (the API refused, the lab is
unreachable, a bad flag) end in one line on stderr, `labbatch: <code>: <message>`, never a
traceback.

Exit codes: 0 done; 1 the API refused, the lab could not be reached, or a job did not succeed;
2 bad usage; 124 `wait` timed out; 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labbatch.error_line import print_error
from labbatch.client import FINAL_STATUSES, LabBatchClient, LabBatchError, is_doctor_canary, resolve_connection

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124  # as coreutils `timeout` does, so scripts can tell "still running" from "failed"
EXIT_INTERRUPTED = 130
LAB_ENV = "LABBATCH_LAB"


class UsageError(LabBatchError):
    """The command line itself is wrong; exits 2 like argparse's own refusals."""

    def __init__(self, message: str):
        super().__init__("usage", message)


@dataclass(frozen=True)
class SubCommand:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    # Sub-commands that call a lab's API get --endpoint/--lab/--profile/--region.
    talks_to_api: bool = True


# -- submit -----------------------------------------------------------------------------------


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", metavar="PIPELINE", help="a pipeline name, as `labbatch pipelines` lists")
    parser.add_argument("inputs", metavar="INPUT", nargs="*",
                        help="s3:// URIs in the lab's buckets, or local files (uploaded to the inputs bucket "
                             "first). With --samples: inputs every sample shares, which the "
                             "pipeline's command must name as {shared_input}/{shared_inputs} (each "
                             "sample's {input} is its own); refused for a pipeline that has no use for them")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline parameter; repeat for more")
    parser.add_argument("--queue", choices=["spot", "on-demand"], help="default: the pipeline's queue")
    parser.add_argument("--pool", metavar="POOL", help="the instance pool (`labbatch pipelines` lists them); "
                        "default: the pipeline's, or the cheapest that holds the job")
    parser.add_argument("--vcpus", type=int, metavar="N")
    parser.add_argument("--memory-mib", type=int, metavar="N")
    parser.add_argument("--name", metavar="NAME", help="a name for the job, shown in `labbatch list`")
    parser.add_argument("--samples", type=Path, metavar="FILE",
                        help="one array job over samples: .json ([{name, inputs, parameters}]) or .csv "
                             "(columns: name; inputs or input* with one or more URIs separated by ';'; "
                             "every other column is a parameter)")
    parser.add_argument("--idempotency-key", metavar="KEY",
                        help="retrying with the same key returns the same job instead of a second one")


def run_submit(args: argparse.Namespace) -> int:
    parameters = parse_parameters(args.param)
    samples, places = load_samples(args.samples) if args.samples else (None, [])
    if not args.inputs and not samples:
        raise UsageError("give at least one INPUT, or --samples FILE")
    from labbatch.transfer.upload import stage_local_inputs  # local paths: uploaded first, said on stderr
    args.inputs, samples = stage_local_inputs(args, args.inputs, samples)
    with _client(args) as client:
        try:
            job = client.submit(args.pipeline, args.inputs, parameters=parameters, queue=args.queue, pool=args.pool,
                                vcpus=args.vcpus, memory_mib=args.memory_mib, name=args.name, samples=samples,
                                idempotency_key=args.idempotency_key)
        except LabBatchError as error:
            raise _in_sample_sheet_terms(error, places) from None
    if args.json:
        return _print_json(job)
    children = f" over {job['array_size']} samples" if job.get("array_size") else ""
    _console().print(f"Submitted [bold]{job.get('job_id')}[/] ({job.get('pipeline', args.pipeline)}{children}): "
                     f"{job.get('status')}; outputs under {job.get('output_prefix')}")
    return EXIT_OK


def parse_parameters(pairs: Iterable[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r} must have the form KEY=VALUE")
        parameters[key.strip()] = value
    return parameters


_SAMPLE_INDEX = re.compile(r"samples\[(\d+)\]")


def _in_sample_sheet_terms(error: LabBatchError, places: Sequence[str]) -> LabBatchError:
    """The API names samples by their 0-based place in the list it got (`samples[3].inputs[0]`);
    say instead where they are in the user's sheet: `row 5 of s.csv (sample S4).inputs[0]`."""
    if not places:
        return error

    def where(match: re.Match) -> str:
        index = int(match.group(1))
        return places[index] if index < len(places) else match.group(0)

    error.message = _SAMPLE_INDEX.sub(where, error.message)
    error.details = {key: _SAMPLE_INDEX.sub(where, value) if isinstance(value, str) else value
                     for key, value in error.details.items()}
    return error


def load_samples(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """A sample sheet as the API's `samples`, and where each one is in the sheet (for messages);
    only its shape is checked here, the API checks the rest."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets like to start CSVs with a BOM
    except OSError as error:
        raise UsageError(f"cannot read --samples {path}: {error.strerror or error}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _samples_from_json(path, text)
    if suffix == ".csv":
        return _samples_from_csv(path, text)
    raise UsageError(f"--samples {path}: use a .json or .csv file")


def _samples_from_json(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--samples {path} is not JSON: {error}") from None
    samples = data.get("samples") if isinstance(data, dict) else data
    if not isinstance(samples, list) or not samples or not all(isinstance(s, dict) for s in samples):
        raise UsageError(f"--samples {path} must hold a non-empty list of objects "
                         '({"name": ..., "inputs": [...], "parameters": {...}})')
    return samples, [f"sample {i + 1} of {path.name}" + (f" ({s['name']})" if isinstance(s.get("name"), str) else "")
                     for i, s in enumerate(samples)]


_URI_SEPARATOR = re.compile(r"[;\s]+")


def _samples_from_csv(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows are numbered as in the file (the header is row 1), as a spreadsheet shows them."""
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    if "name" not in columns:
        raise UsageError(f"--samples {path} needs a 'name' column (found: {', '.join(columns) or 'no header'})")
    input_columns = [c for c in columns if c.lower().startswith("input")]
    if not input_columns:
        raise UsageError(f"--samples {path} needs an 'inputs' column (or input1, input2, ...)")
    samples, places = [], []
    for row in reader:
        number = reader.line_num  # blank lines count, as they do in the file
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        inputs = [uri for c in input_columns for uri in _URI_SEPARATOR.split(row.get(c, "")) if uri]
        if not row.get("name"):
            raise UsageError(f"--samples {path} row {number}: the sample has no name")
        if not inputs:
            raise UsageError(f"--samples {path} row {number} (sample {row['name']}): no input")
        parameters = {c: row[c] for c in columns if c != "name" and c not in input_columns and row.get(c)}
        samples.append({"name": row["name"], "inputs": inputs, **({"parameters": parameters} if parameters else {})})
        places.append(f"row {number} of {path.name} (sample {row['name']})")
    if not samples:
        raise UsageError(f"--samples {path} lists no samples")
    return samples, places


# -- status, list, cancel, pipelines ------------------------------------------------------------


def _job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", help="a job id (j-...)")


def _job_or_child_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB",
                        help="a job id (j-...), or JOB:INDEX or JOB:SAMPLE for one child of an array job")


def _child_of(job_id: str) -> tuple[str, str | None]:
    """"j-...:3" or "j-...:sample-a" -> (job id, child); a plain id -> (job id, None)."""
    job, _, child = job_id.partition(":")
    return job, (child or None)


def run_status(args: argparse.Namespace) -> int:
    job_id, child_name = _child_of(args.job_id)
    with _client(args) as client:
        job = client.child(job_id, child_name) if child_name else client.get(job_id)
    if args.json:
        return _print_json(job)
    if child_name:
        print_table(_child_table(job))
        return EXIT_OK
    print_table(_job_table(job))
    if job.get("failed_children"):
        print_table(_failed_children_table(job))
        more = _more_failed_children(job)
        if more:
            print(more, file=sys.stderr)
    return EXIT_OK


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", metavar="STATUS", help="only jobs in this status (e.g. RUNNING, FAILED)")
    parser.add_argument("--pipeline", metavar="PIPELINE", help="only jobs of this pipeline")
    parser.add_argument("--limit", type=int, metavar="N", help="jobs per page")
    parser.add_argument("--all", action="store_true",
                        help="every job: every page, not only the newest, and `labbatch doctor`'s canary jobs")


def run_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.all:
            page = {"jobs": list(client.iter_jobs(status=args.status, pipeline=args.pipeline, limit=args.limit)),
                    "next_token": None}
        else:
            page = client.list(status=args.status, pipeline=args.pipeline, limit=args.limit)
    canaries = 0 if args.all else sum(1 for job in page["jobs"] if is_doctor_canary(job))
    if canaries:
        page = {**page, "jobs": [job for job in page["jobs"] if not is_doctor_canary(job)]}
        print(f"labbatch: {canaries} canary job(s) of `labbatch doctor` not shown: add --all", file=sys.stderr)
    if args.json:
        return _print_json(page)
    print_table(jobs_table(page["jobs"]))
    if page["next_token"]:
        print("labbatch: older jobs not shown: add --all", file=sys.stderr)
    return EXIT_OK


def run_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.cancel(args.job_id)
    if args.json:
        return _print_json(answer)
    _console().print(f"Cancel requested for [bold]{args.job_id}[/]; status {answer.get('status', 'unknown')}")
    return EXIT_OK


def run_pipelines(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.pipelines_and_pools()
    if args.json:
        return _print_json(answer)
    print_table(_pipelines_table(answer["pipelines"]))
    print_table(pools_table(answer["pools"]))
    return EXIT_OK


# -- why --------------------------------------------------------------------------------------


def run_why(args: argparse.Namespace) -> int:
    from labbatch import boot_reasons

    job_id, child_name = _child_of(args.job_id)
    connection = resolve_connection(endpoint=args.endpoint, lab=args.lab, profile=args.profile, region=args.region)
    with connection.client() as client:
        job = client.child(job_id, child_name) if child_name else client.get(job_id)
        # An instance that never joined says why only on its console (labbatch/boot_reasons.py).
        boot = None if child_name else boot_reasons.for_waiting_job(connection, client, job)
    if child_name:
        if args.json:
            return _print_json(job)
        print(child_why_text(job))
        return EXIT_OK
    if args.json:
        keys = ("job_id", "status", "status_reason", "failure", "waiting_because", "attempts", "child_failures",
                "failed_children", "failed_children_next_token")
        return _print_json({**{key: job.get(key) for key in keys if job.get(key) is not None}, **(boot or {})})
    print("\n".join([why_text(job) + failed_children_text(job), *boot_reasons.why_lines(boot)]))
    return EXIT_OK


def _child_label(child: Mapping[str, Any]) -> str:
    sample = f" (sample {child['sample']})" if child.get("sample") else ""
    return f"{child.get('job_id')}:{child.get('index')}{sample}"


def _log_text(log: Any) -> str | None:
    if not isinstance(log, Mapping):
        return None
    return " ".join(str(v) for v in (log.get("group"), log.get("stream")) if v) or None


def child_why_text(child: Mapping[str, Any]) -> str:
    """One array child: how it ended, in the words of its runner (or of Batch)."""
    status = child.get("status")
    if status != "FAILED":
        return f"{_child_label(child)} is {status}." + (f" Log: {_log_text(child.get('log'))}"
                                                        if _log_text(child.get("log")) else "")
    failure = f" ({child['failure']})" if child.get("failure") else ""
    lines = [f"{_child_label(child)} FAILED{failure}: {child.get('reason') or 'no reason given'}"]
    if child.get("exit_code") is not None:
        lines.append(f"Exit code: {child['exit_code']}")
    if _log_text(child.get("log")):
        lines.append(f"Log: {_log_text(child.get('log'))}")
    if child.get("manifest"):
        lines.append(f"Manifest: {child['manifest']}")
    return "\n".join(lines)


def failed_children_text(job: Mapping[str, Any]) -> str:
    """Lines naming an array job's failed children (empty when it has none)."""
    children = job.get("failed_children") or []
    if not children:
        return ""
    total = sum((job.get("child_failures") or {}).values()) or len(children)
    classes = ", ".join(f"{n} {name}" for name, n in (job.get("child_failures") or {}).items())
    lines = [f"Failed children: {total} of {job.get('array_size', '?')}" + (f" ({classes})" if classes else "")]
    for child in children:
        failure = f" ({child['failure']})" if child.get("failure") else ""
        lines.append(f"  {child.get('index')} {child.get('sample') or '?'}{failure}: {child.get('reason') or 'no reason given'}")
        if _log_text(child.get("log")):
            lines.append(f"      log: {_log_text(child.get('log'))}")
    more = _more_failed_children(job)
    if more:
        lines.append(more)
    return "\n" + "\n".join(lines)


def _more_failed_children(job: Mapping[str, Any]) -> str | None:
    if not job.get("failed_children_next_token"):
        return None
    shown = len(job.get("failed_children") or [])
    total = sum((job.get("child_failures") or {}).values())
    return (f"labbatch: {total - shown if total > shown else 'more'} failed children not shown: "
            f"labbatch status {job.get('job_id')}:SAMPLE, or GET /jobs/{job.get('job_id')}/children?status=FAILED")


def why_text(job: Mapping[str, Any]) -> str:
    """Why the job is where it is, in a few plain lines: the API's `waiting_because` when it has one."""
    job_id, status = job.get("job_id"), job.get("status")
    waiting = job.get("waiting_because")
    if waiting:
        seconds = waiting.get("waiting_seconds")
        head = (f"{job_id} is {status}, waiting for {_duration(seconds)}." if status != "FAILED" and seconds is not None
                else f"{job_id} is {status}.")
        lines = [head, f"Why: {waiting.get('message')}", f"Fix: {waiting.get('fix')}"]
        if waiting.get("status_reason"):
            lines.append(f"Batch says: {waiting['status_reason']}")
        return "\n".join(lines)
    reason = job.get("status_reason")
    if status in ("PENDING_SUBMIT", "SUBMITTED", "PENDING", "RUNNABLE"):
        return (f"{job_id} is {status}: Batch is placing it and reports nothing holding it back yet."
                + (f" ({reason})" if reason else "")
                + " A job still waiting after a minute is explained here.")
    if status in ("STARTING", "RUNNING"):
        return f"{job_id} is {status} (started {job.get('started_at') or 'just now'}); nothing is holding it back."
    if status == "SUCCEEDED":
        return f"{job_id} SUCCEEDED; outputs under {job.get('output_prefix')}."
    lines = [f"{job_id} FAILED" + (f" ({job['failure']})" if job.get("failure") else "") + f": {reason or 'no reason given'}"]
    attempts = job.get("attempts") or []
    if attempts:
        lines.append(f"Attempts: {_attempts_summary(attempts)}")
        lines += [f"  {line}" for line in failed_attempt_lines(attempts)]
    if job.get("submit_error"):
        lines.append(f"Not submitted: {job['submit_error'].get('message')}")
    log = job.get("log") or {}
    if isinstance(log, dict) and log.get("stream"):
        lines.append(f"Log: {log.get('group')} {log.get('stream')}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# -- wait -------------------------------------------------------------------------------------


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", metavar="JOB", nargs="+")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 124)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS", help="between polls (default 5)")


def run_wait(args: argparse.Namespace) -> int:
    job_ids = list(dict.fromkeys(args.job_ids))
    with _client(args) as client:
        if args.json:
            records = client.wait(job_ids, timeout=args.timeout, interval=args.interval)
        else:
            with WaitProgress(job_ids) as progress:
                records = client.wait(job_ids, timeout=args.timeout, interval=args.interval,
                                      on_update=progress.update)
    jobs = [records[job_id] for job_id in job_ids]
    if args.json:
        _print_json({"jobs": jobs})
    else:
        print_table(jobs_table(jobs))
    return EXIT_OK if all(job.get("status") == "SUCCEEDED" for job in jobs) else EXIT_FAILED


class WaitProgress:
    """One bar per job; an array job's bar counts its finished children."""

    def __init__(self, job_ids: Sequence[str]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=_console(stderr=True))
        self._tasks = {job_id: self._progress.add_task(job_id, total=1) for job_id in job_ids}

    def __enter__(self) -> WaitProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        for job_id, record in records.items():
            total, done, failed = progress_counts(record)
            note = f" ({failed} failed)" if failed else ""
            self._progress.update(self._tasks[job_id], total=total, completed=done,
                                  description=f"{job_id} {record.get('status', '?')}{note}")


def progress_counts(job: Mapping[str, Any]) -> tuple[int, int, int]:
    """(total, finished, failed): over the children of an array job, or 1 for a plain job."""
    children = job.get("children") or {}
    if children or job.get("array_size"):
        total = job.get("array_size") or sum(children.values())
        done = children.get("SUCCEEDED", 0) + children.get("FAILED", 0)
        if job.get("status") in FINAL_STATUSES:
            done = total  # the parent's end is the end, whatever the last child count said
        return total, done, children.get("FAILED", 0)
    finished = job.get("status") in FINAL_STATUSES
    return 1, int(finished), int(job.get("status") == "FAILED")


# -- output -----------------------------------------------------------------------------------


def _console(stderr: bool = False) -> Any:
    from rich.console import Console  # rich costs start-up time that --help and errors need not pay

    # soft_wrap: lines are left to the terminal to wrap, so a URI or job id is never folded.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_json(value: Any) -> int:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    return EXIT_OK


def _table(*columns: str, title: str | None = None) -> Any:
    """A table that breaks text only between words: no column gets narrower than its longest
    word, so a job id, a URI or a log stream is never cut, folded or ellipsized. A table wider
    than the terminal runs past it (print it with crop=False) instead."""
    from rich.table import Table

    class WholeWords(Table):
        def add_row(self, *renderables: Any, **kwargs: Any) -> None:
            super().add_row(*renderables, **kwargs)
            for column, cell in zip(self.columns, renderables):
                longest = max((len(word) for word in f"{column.header} {cell or ''}".split()), default=1)
                column.min_width = max(column.min_width or 1, longest)

    return WholeWords(*columns, title=title, title_justify="left")


def print_table(table: Any, console: Any = None) -> None:
    (console or _console()).print(table, crop=False)


def _job_table(job: Mapping[str, Any]) -> Any:
    table = _table("field", "value", title=job.get("job_id"))
    attempts = job.get("attempts") or []
    log = job.get("log") or {}
    rows = {
        "name": job.get("name"),
        "pipeline": job.get("pipeline"),
        "queue": job.get("queue"),
        "status": job.get("status"),
        "reason": job.get("status_reason"),
        "failure": job.get("failure"),
        "recovered by": _recovery_link(job.get("recovered_by"), None),
        "recovered from": _recovery_link(job.get("recovered_from"), job.get("recovery")),
        "not recovered": (job.get("recovery_refused") or {}).get("reason"),
        "attempts": _attempts_summary(attempts) if attempts else None,
        "failed attempts": "\n".join(failed_attempt_lines(attempts)) or None,
        "children": _children_summary(job.get("children")),
        "vcpus / memory": f"{job['vcpus']} vCPU / {job['memory_mib']} MiB" if "vcpus" in job and "memory_mib" in job
        else None,
        "submitted by": job.get("submitted_by"),
        "created": job.get("created_at"),
        "started": job.get("started_at"),
        "stopped": job.get("stopped_at"),
        "outputs": job.get("output_prefix"),
        "log": " ".join(str(v) for v in (log.get("group"), log.get("stream")) if v) if isinstance(log, dict) else log,
    }
    for field, value in rows.items():
        if value not in (None, ""):
            table.add_row(field, str(value))
    return table


def _child_table(child: Mapping[str, Any]) -> Any:
    table = _table("field", "value", title=f"{child.get('job_id')}:{child.get('index')}")
    rows = {"sample": child.get("sample"), "status": child.get("status"), "failure": child.get("failure"),
            "reason": child.get("reason"), "exit code": child.get("exit_code"), "started": child.get("started_at"),
            "stopped": child.get("stopped_at"), "log": _log_text(child.get("log")), "manifest": child.get("manifest")}
    for field, value in rows.items():
        if value not in (None, ""):
            table.add_row(field, str(value))
    return table


def _failed_children_table(job: Mapping[str, Any]) -> Any:
    table = _table("child", "sample", "failure", "reason", "log", title="failed children")
    for child in job.get("failed_children") or []:
        table.add_row(*(str(v if v is not None else "") for v in (
            child.get("index"), child.get("sample"), child.get("failure"), child.get("reason"),
            _log_text(child.get("log")))))
    return table


def _recovery_link(job_id: str | None, recovery: Mapping[str, Any] | None) -> str | None:
    if not job_id:
        return None
    if isinstance(recovery, Mapping) and recovery.get("kind"):
        return f"{job_id} ({recovery['kind']}: {recovery.get('reason', '')})"
    return job_id


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> Any:
    table = _table("job", "name", "pipeline", "queue", "status", "children", "created")
    for job in jobs:
        table.add_row(*(str(v or "") for v in (
            job.get("job_id"), job.get("name"), job.get("pipeline"), job.get("queue"),
            f"{job.get('status')} ({job['failure']})" if job.get("failure") else job.get("status"),
            _children_summary(job.get("children")), job.get("created_at"))))
    return table


def _pipelines_table(pipelines: Sequence[Mapping[str, Any]]) -> Any:
    # A local lab says what its lab file's `local:` block changed; a deployed lab has no such column.
    local = any(pipeline.get("local") for pipeline in pipelines)
    table = _table("pipeline", "description", "defaults", "limits", "parameters", *(("local mode",) if local else ()))
    for pipeline in pipelines:
        defaults, limits = pipeline.get("defaults") or {}, pipeline.get("limits") or {}
        parameters = pipeline.get("parameters") or {}
        table.add_row(
            str(pipeline.get("name", "")),
            str(pipeline.get("description", "")),
            f"{defaults.get('vcpus', '?')} vCPU, {defaults.get('memory_mib', '?')} MiB, "
            + (f"{defaults['gpus']} GPU, " if defaults.get("gpus") else "") + f"{defaults.get('queue', '?')}",
            f"≤ {limits.get('max_vcpus', '?')} vCPU, ≤ {limits.get('max_memory_mib', '?')} MiB, "
            + (f"≤ {limits['max_gpus']} GPU, " if limits.get("max_gpus") else "")
            + f"{limits.get('scratch_gib', '?')} GiB scratch; "
            + (f"pool {pipeline['pool']}" if pipeline.get("pool") else "cheapest pool that holds it"),
            _parameters_cell(parameters, pipeline.get("secondary_files") or {}),
            *((_local_cell(pipeline.get("local") or {}),) if local else ()),
        )
    return table


def pools_table(pools: Sequence[Mapping[str, Any]]) -> Any:
    """The lab's instance pools: each one's queues, max vCPUs and what one job can get on it."""
    table = _table("pool", "queues (max vCPUs)", "one job at most")
    for pool in pools:
        limits, most = pool.get("limits") or {}, pool.get("queue_max_vcpus") or {}
        if limits.get("max_gpus"):
            gpus = f", {limits['max_gpus']} GPU ({limits.get('gpu_memory_mib', 0) // 1024} GiB each)"
        elif limits.get("lab_max_gpus"):
            gpus = f", no GPU on this machine (the lab's instances give {limits['lab_max_gpus']})"
        else:
            gpus = ""
        table.add_row(
            str(pool.get("name", "")) + (" (GPU)" if pool.get("gpu") else ""),
            ", ".join(f"{name} ({most.get(kind, '?')})" for kind, name in sorted((pool.get("queues") or {}).items())),
            f"{limits.get('max_vcpus', '?')} vCPU, {limits.get('max_memory_mib', '?')} MiB{gpus}, "
            f"{limits.get('scratch_gib', '?')} GiB scratch")
    return table


def _parameters_cell(parameters: Mapping[str, Any], companions: Mapping[str, Sequence[str]]) -> str:
    """`reference* (+ .amb .ann)`: required parameters starred, each value's companion files after it."""

    def travels(key: str) -> str:
        return f" (+ {' '.join(companions[key])})" if companions.get(key) else ""

    said = [f"{name}{'*' if (spec or {}).get('required') else ''}{travels('param:' + name)}"
            for name, spec in parameters.items()]
    said += [f"{{{key}}}{travels(key)}" for key in ("inputs", "shared_inputs") if companions.get(key)]
    return ", ".join(said)


def _local_cell(local: Mapping[str, Any]) -> str:
    """What local mode runs otherwise than the lab file says: a stand-in image, scaled defaults."""
    said = []
    if local.get("stand_in"):
        said.append(f"runs in {local['stand_in']} for {local.get('image', '?')}")
    if scaled := local.get("scaled_from"):
        said.append(f"scaled to this machine from {scaled.get('vcpus', '?')} vCPU, {scaled.get('memory_mib', '?')} MiB")
    return "; ".join(said)


def failed_attempt_lines(attempts: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per failed attempt: its exit code and the tool's last words (else Batch's reason)."""
    lines = []
    for number, attempt in enumerate(attempts, start=1):
        code = attempt.get("exit_code")
        if code == 0 or (code is None and not attempt.get("reason")):
            continue
        said = attempt.get("stderr_tail") or attempt.get("reason") or "no reason given"
        lines.append(f"attempt {number}: " + (f"exit {code}: " if code is not None else "") + said)
    # One failed attempt in Batch's words only: the summary line has said all of it already.
    if len(lines) == 1 and not any(a.get("stderr_tail") for a in attempts):
        return []
    return lines


def _attempts_summary(attempts: Sequence[Mapping[str, Any]]) -> str:
    last = attempts[-1]
    exit_code = f"exit {last['exit_code']}" if last.get("exit_code") is not None else None
    detail = "; ".join(str(v) for v in (exit_code, last.get("reason")) if v)
    return f"{len(attempts)}" + (f" (last: {detail})" if detail else "")


def _children_summary(children: Mapping[str, int] | None) -> str:
    if not children:
        return ""
    return ", ".join(f"{count} {status.lower()}" for status, count in children.items() if count)


def report_error(error: LabBatchError, *, as_json: bool) -> int:
    if as_json:
        _print_json({"error": {"code": error.code, "message": error.message, "details": error.details}})
    print_error(error.code, error.message, error.details)
    if isinstance(error, UsageError):
        return EXIT_USAGE
    return EXIT_TIMEOUT if error.code == "timeout" else EXIT_FAILED


# -- wiring -----------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> LabBatchClient:
    connection = resolve_connection(endpoint=args.endpoint, lab=args.lab, profile=args.profile, region=args.region)
    return connection.client()


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """Local mode pulls in moto and the executor: import them only when their command runs."""
    def run(args: argparse.Namespace) -> int:
        import importlib
        return getattr(importlib.import_module(module), function)(args)
    return run


def _lazy_arguments(module: str, function: str) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(parser: argparse.ArgumentParser) -> None:
        import importlib
        getattr(importlib.import_module(module), function)(parser)
    return arguments


COMMANDS: tuple[SubCommand, ...] = (
    SubCommand("submit", "submit a job (or one array job over --samples)", run_submit, _submit_arguments),
    SubCommand("status", "show one job (or one child of an array job)", run_status, _job_or_child_argument),
    SubCommand("list", "list jobs, newest first", run_list, _list_arguments),
    SubCommand("cancel", "cancel a queued job or terminate a running one", run_cancel, _job_argument),
    SubCommand("wait", "follow jobs to their end; exit 0 only if all succeeded", run_wait, _wait_arguments),
    SubCommand("pipelines", "what this lab can run, with defaults and limits", run_pipelines),
    SubCommand("why", "why a job is waiting (or how it ended)", run_why, _job_or_child_argument),
    SubCommand("upload", "upload files and folders to the lab's inputs (or references) bucket, checksums verified; "
               "prints the s3:// URIs to submit", _lazy("labbatch.transfer.upload", "run_upload"),
               _lazy_arguments("labbatch.transfer.upload", "upload_arguments")),
    SubCommand("results", "download a job's outputs (every array child's), verified against its manifest.json",
               _lazy("labbatch.transfer.results", "run_results"), _lazy_arguments("labbatch.transfer.results", "results_arguments")),
    SubCommand("download", "download everything under a prefix of the lab's buckets (a workflow engine's outputs), "
               "each file checked against S3's own checksum", _lazy("labbatch.prefix_download", "run_download"),
               _lazy_arguments("labbatch.prefix_download", "download_arguments")),
    SubCommand("report", "an HTML report of jobs (JOB..., --since 7d, --pipeline NAME): failures, times, peaks, "
               "cost per sample and right-sizing", _lazy("labbatch.report.command", "run_report"),
               _lazy_arguments("labbatch.report.command", "report_arguments")),
    SubCommand("logs", "a job's log lines, every attempt (--child N for an array child, --follow to keep going)",
               _lazy("labbatch.joblogs", "run_logs"), _lazy_arguments("labbatch.joblogs", "logs_arguments")),
    SubCommand("doctor", "check the lab end to end: API, queues, compute environments, images, a canary job "
               "per queue; exit 0 when all pass", _lazy("labbatch.doctor", "run_doctor"),
               _lazy_arguments("labbatch.doctor", "doctor_arguments")),
    SubCommand("tes-proxy", "a localhost GA4GH TES endpoint for workflow engines (Snakemake, Nextflow, py-tes) "
               "that re-signs each request with your AWS credentials", _lazy("labbatch.tes_proxy", "run_tes_proxy"),
               _lazy_arguments("labbatch.tes_proxy", "tes_proxy_arguments")),
    SubCommand("token", "bearer tokens for workflow engines on the lab's TES endpoint: create (shown once), list, "
               "revoke ID", _lazy("labbatch.engine_config", "run_token"),
               _lazy_arguments("labbatch.engine_config", "token_arguments")),
    SubCommand("engine-config", "what Snakemake, Nextflow, Toil, Cromwell or py-tes need for this lab's TES "
               "endpoint: URL, token, work prefix", _lazy("labbatch.engine_config", "run_engine_config"),
               _lazy_arguments("labbatch.engine_config", "engine_config_arguments")),
    SubCommand("local", "run a lab on this machine, no AWS account needed", _lazy("labbatch.local.command", "run_local"),
               _lazy_arguments("labbatch.local.command", "local_arguments"), talks_to_api=False),
    SubCommand("demo", "tour: local lab, simulated reads, real jobs, results", _lazy("labbatch.demo", "run_demo"),
               _lazy_arguments("labbatch.demo", "demo_arguments"), talks_to_api=False),
    SubCommand("cost", "a lab's fixed monthly cost and per-job prices, from its templates",
               _lazy("labbatch.cost", "run_cost"), _lazy_arguments("labbatch.cost", "cost_arguments"),
               talks_to_api=False),
)


def build_parser(commands: Sequence[SubCommand] = COMMANDS) -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of tables")
    api = argparse.ArgumentParser(add_help=False)
    where = api.add_argument_group("which lab")
    where.add_argument("--endpoint", metavar="URL", help="the API's URL (default: $LABBATCH_ENDPOINT, a running "
                       "local lab, or the ApiEndpoint output of the lab's deployed API stack)")
    where.add_argument("--lab", default=os.environ.get(LAB_ENV), metavar="NAME", help=f"the lab (default: ${LAB_ENV})")
    where.add_argument("--profile", metavar="PROFILE", help="AWS profile to sign with (default: the usual chain)")
    where.add_argument("--region", metavar="REGION", help="the lab's Region (default: the profile's)")

    parser = argparse.ArgumentParser(prog="labbatch", description="Run and follow jobs on a LabBatch lab.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in commands:
        parents = [output, api] if command.talks_to_api else [output]
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help, parents=parents)
        command.arguments(sub)
        sub.set_defaults(command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # argparse's --help and usage errors; in-process callers get a code
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    command: SubCommand | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return command.run(args)
    except LabBatchError as error:
        return report_error(error, as_json=getattr(args, "json", False))
    except KeyboardInterrupt:
        print("labbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
