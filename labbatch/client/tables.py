"""How the CLI shows things: rich tables of jobs, children, failed attempts, pipelines and pools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def console(stderr: bool = False) -> Any:
    from rich.console import Console  # rich costs start-up time that --help and errors need not pay

    # soft_wrap: lines are left to the terminal to wrap, so a URI or job id is never folded.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def new_table(*columns: str, title: str | None = None) -> Any:
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


def print_table(table: Any, to: Any = None) -> None:
    (to or console()).print(table, crop=False)


def job_table(job: Mapping[str, Any]) -> Any:
    table = new_table("field", "value", title=job.get("job_id"))
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
        "attempts": attempts_summary(attempts) if attempts else None,
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


def child_table(child: Mapping[str, Any]) -> Any:
    table = new_table("field", "value", title=f"{child.get('job_id')}:{child.get('index')}")
    rows = {"sample": child.get("sample"), "status": child.get("status"), "failure": child.get("failure"),
            "reason": child.get("reason"), "exit code": child.get("exit_code"), "started": child.get("started_at"),
            "stopped": child.get("stopped_at"), "log": log_text(child.get("log")), "manifest": child.get("manifest")}
    for field, value in rows.items():
        if value not in (None, ""):
            table.add_row(field, str(value))
    return table


def failed_children_table(job: Mapping[str, Any]) -> Any:
    table = new_table("child", "sample", "failure", "reason", "log", title="failed children")
    for child in job.get("failed_children") or []:
        table.add_row(*(str(v if v is not None else "") for v in (
            child.get("index"), child.get("sample"), child.get("failure"), child.get("reason"),
            log_text(child.get("log")))))
    return table


def _recovery_link(job_id: str | None, recovery: Mapping[str, Any] | None) -> str | None:
    if not job_id:
        return None
    if isinstance(recovery, Mapping) and recovery.get("kind"):
        return f"{job_id} ({recovery['kind']}: {recovery.get('reason', '')})"
    return job_id


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> Any:
    table = new_table("job", "name", "pipeline", "queue", "status", "children", "created")
    for job in jobs:
        table.add_row(*(str(v or "") for v in (
            job.get("job_id"), job.get("name"), job.get("pipeline"), job.get("queue"),
            f"{job.get('status')} ({job['failure']})" if job.get("failure") else job.get("status"),
            _children_summary(job.get("children")), job.get("created_at"))))
    return table


def pipelines_table(pipelines: Sequence[Mapping[str, Any]]) -> Any:
    # A local lab says what its lab file's `local:` block changed; a deployed lab has no such column.
    local = any(pipeline.get("local") for pipeline in pipelines)
    table = new_table("pipeline", "description", "defaults", "limits", "parameters", *(("local mode",) if local else ()))
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
    table = new_table("pool", "queues (max vCPUs)", "one job at most")
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


def attempts_summary(attempts: Sequence[Mapping[str, Any]]) -> str:
    last = attempts[-1]
    exit_code = f"exit {last['exit_code']}" if last.get("exit_code") is not None else None
    detail = "; ".join(str(v) for v in (exit_code, last.get("reason")) if v)
    return f"{len(attempts)}" + (f" (last: {detail})" if detail else "")


def _children_summary(children: Mapping[str, int] | None) -> str:
    if not children:
        return ""
    return ", ".join(f"{count} {status.lower()}" for status, count in children.items() if count)


def log_text(log: Any) -> str | None:
    if not isinstance(log, Mapping):
        return None
    return " ".join(str(v) for v in (log.get("group"), log.get("stream")) if v) or None
