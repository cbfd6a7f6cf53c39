"""`labbatch status`, `list`, `cancel`, `pipelines` and `wait`: a lab's jobs as the API reports them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from labbatch.client.command_base import EXIT_FAILED, EXIT_OK, api_client, child_of, print_json
from labbatch.client.tables import child_table, console, failed_children_table, job_table, jobs_table, pipelines_table, pools_table, print_table
from labbatch.client.why import more_failed_children
from labbatch.client.sdk import FINAL_STATUSES, is_doctor_canary


def run_status(args: argparse.Namespace) -> int:
    job_id, child_name = child_of(args.job_id)
    with api_client(args) as client:
        job = client.child(job_id, child_name) if child_name else client.get(job_id)
    if args.json:
        return print_json(job)
    if child_name:
        print_table(child_table(job))
        return EXIT_OK
    print_table(job_table(job))
    if job.get("failed_children"):
        print_table(failed_children_table(job))
        more = more_failed_children(job)
        if more:
            print(more, file=sys.stderr)
    return EXIT_OK


def list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", metavar="STATUS", help="only jobs in this status (e.g. RUNNING, FAILED)")
    parser.add_argument("--pipeline", metavar="PIPELINE", help="only jobs of this pipeline")
    parser.add_argument("--limit", type=int, metavar="N", help="jobs per page")
    parser.add_argument("--all", action="store_true",
                        help="every job: every page, not only the newest, and `labbatch doctor`'s canary jobs")


def run_list(args: argparse.Namespace) -> int:
    with api_client(args) as client:
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
        return print_json(page)
    print_table(jobs_table(page["jobs"]))
    if page["next_token"]:
        print("labbatch: older jobs not shown: add --all", file=sys.stderr)
    return EXIT_OK


def run_cancel(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        answer = client.cancel(args.job_id)
    if args.json:
        return print_json(answer)
    console().print(f"Cancel requested for [bold]{args.job_id}[/]; status {answer.get('status', 'unknown')}")
    return EXIT_OK


def run_pipelines(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        answer = client.pipelines_and_pools()
    if args.json:
        return print_json(answer)
    print_table(pipelines_table(answer["pipelines"]))
    print_table(pools_table(answer["pools"]))
    return EXIT_OK


def wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", metavar="JOB", nargs="+")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 124)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS", help="between polls (default 5)")


def run_wait(args: argparse.Namespace) -> int:
    job_ids = list(dict.fromkeys(args.job_ids))
    with api_client(args) as client:
        if args.json:
            records = client.wait(job_ids, timeout=args.timeout, interval=args.interval)
        else:
            with WaitProgress(job_ids) as progress:
                records = client.wait(job_ids, timeout=args.timeout, interval=args.interval,
                                      on_update=progress.update)
    jobs = [records[job_id] for job_id in job_ids]
    if args.json:
        print_json({"jobs": jobs})
    else:
        print_table(jobs_table(jobs))
    return EXIT_OK if all(job.get("status") == "SUCCEEDED" for job in jobs) else EXIT_FAILED


class WaitProgress:
    """One bar per job; an array job's bar counts its finished children."""

    def __init__(self, job_ids: Sequence[str]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console(stderr=True))
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
