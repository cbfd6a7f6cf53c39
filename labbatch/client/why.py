"""`labbatch why`: why a job is waiting, or how it ended, in words (and its failed children's)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from labbatch.client.command_base import EXIT_OK, child_of, connection_of, print_json
from labbatch.client.tables import attempts_summary, failed_attempt_lines, log_text


def run_why(args: argparse.Namespace) -> int:
    from labbatch.client import boot_reasons

    job_id, child_name = child_of(args.job_id)
    connection = connection_of(args)
    with connection.client() as client:
        job = client.child(job_id, child_name) if child_name else client.get(job_id)
        # An instance that never joined says why only on its console (labbatch/client/boot_reasons.py).
        boot = None if child_name else boot_reasons.for_waiting_job(connection, client, job)
    if child_name:
        if args.json:
            return print_json(job)
        print(child_why_text(job))
        return EXIT_OK
    if args.json:
        keys = ("job_id", "status", "status_reason", "failure", "waiting_because", "attempts", "child_failures",
                "failed_children", "failed_children_next_token")
        return print_json({**{key: job.get(key) for key in keys if job.get(key) is not None}, **(boot or {})})
    print("\n".join([why_text(job) + failed_children_text(job), *boot_reasons.why_lines(boot)]))
    return EXIT_OK


def _child_label(child: Mapping[str, Any]) -> str:
    sample = f" (sample {child['sample']})" if child.get("sample") else ""
    return f"{child.get('job_id')}:{child.get('index')}{sample}"


def child_why_text(child: Mapping[str, Any]) -> str:
    """One array child: how it ended, in the words of its runner (or of Batch)."""
    status = child.get("status")
    if status != "FAILED":
        return f"{_child_label(child)} is {status}." + (f" Log: {log_text(child.get('log'))}"
                                                        if log_text(child.get("log")) else "")
    failure = f" ({child['failure']})" if child.get("failure") else ""
    lines = [f"{_child_label(child)} FAILED{failure}: {child.get('reason') or 'no reason given'}"]
    if child.get("exit_code") is not None:
        lines.append(f"Exit code: {child['exit_code']}")
    if log_text(child.get("log")):
        lines.append(f"Log: {log_text(child.get('log'))}")
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
        if log_text(child.get("log")):
            lines.append(f"      log: {log_text(child.get('log'))}")
    more = more_failed_children(job)
    if more:
        lines.append(more)
    return "\n" + "\n".join(lines)


def more_failed_children(job: Mapping[str, Any]) -> str | None:
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
        lines.append(f"Attempts: {attempts_summary(attempts)}")
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
