"""The report as one self-contained HTML page: plotly.js inline, no network needed to open it.

The page's numbers are also embedded as JSON (`<script type="application/json"
id="labbatch-report-data">`, the same object `labbatch report --json` prints), so scripts and
tests read exactly what the page shows.
"""

from __future__ import annotations

import html
import json
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from labbatch.client.report import rightsizing
from labbatch.client.report.summary import Report, Sample, failures_by_reason
from labbatch_contract.failures import OUT_OF_MEMORY, SPOT_RECLAIMED

OUTCOME_COLOURS = {"succeeded": "#2e7d32", SPOT_RECLAIMED: "#f9a825", OUT_OF_MEMORY: "#c62828", "failed": "#6a1b9a"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3;cursor:pointer}.num{text-align:right}pre{background:#f6f6f6;padding:.6em}
.rule{color:#555;font-size:.9em}.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{width:560px;height:340px}
"""
# Click a header to sort its table: small enough to inline, no library needed.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var tb=th.closest('table').tBodies[0];var rows=Array.from(tb.rows);var asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,y=b.cells[i].dataset.v||b.cells[i].textContent;
var nx=parseFloat(x),ny=parseFloat(y);var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});});});
"""


def money(usd: float) -> str:
    # A local demo's jobs cost fractions of a cent: keep three significant figures there.
    if usd >= 1:
        return f"${usd:,.2f}"
    return f"${usd:.4f}" if usd >= 0.01 else f"${usd:.3g}"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def data(report: Report) -> dict[str, Any]:
    """What the page shows, as JSON."""
    return {
        "counts": report.counts(), "wall_seconds": report.wall_seconds(), "costs": report.costs(),
        "cost_rule": report.book.rule, "rightsizing_rule": rightsizing.RULE,
        "samples": [{"job_id": s.job_id, "index": s.index, "sample": s.label, "pipeline": s.pipeline,
                     "status": s.status, "failure": s.failure, "reason": s.reason, "cost_usd": s.cost_usd,
                     "log_command": s.log_command, "attempts": s.attempts} for s in report.samples],
        "recommendations": [{"pipeline": r.pipeline, "samples": r.samples, "current_vcpus": r.current_vcpus,
                             "current_memory_mib": r.current_memory_mib, "vcpus": r.vcpus, "memory_mib": r.memory_mib,
                             "saving_usd": r.saving_usd, "reason": r.reason, "lab_change": r.lab_change}
                            for r in report.recommendations],
    }


def _plot(fig: go.Figure, div_id: str, title: str) -> str:
    fig.update_layout(title=title, margin={"l": 50, "r": 20, "t": 40, "b": 40}, showlegend=True)
    return ('<div class="plot">' + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                                               config={"displaylogo": False, "displayModeBar": False,
                                                       "responsive": True}) + "</div>")


def _box(values: dict[str, list[float]], unit: str) -> go.Figure:
    fig = go.Figure()
    for name, points in values.items():
        fig.add_trace(go.Box(y=points, name=name, boxpoints="all", jitter=0.3))
    fig.update_yaxes(title_text=unit)
    return fig


def pipeline_section(name: str, attempts: list[dict[str, Any]], n: int) -> str:
    def col(key: str, scale: float = 1.0) -> list[float]:
        return [a[key] / scale for a in attempts if isinstance(a.get(key), (int, float))]

    largest = max(col("bytes_in") + col("bytes_out") + [0.0])
    scale, unit = next((s, u) for s, u in ((1024 ** 3, "GiB"), (1024 ** 2, "MiB"), (1024, "KiB"), (1, "bytes"))
                       if largest >= s or s == 1)
    plots = [
        _plot(_box({"run time": col("run_s"), "queue wait": col("queue_wait_s")}, "seconds"), f"p{n}-time",
              f"{name}: run time and queue wait"),
        _plot(_box({"requested": col("memory_mib"), "peak": col("peak_memory_mib")}, "MiB"), f"p{n}-memory",
              f"{name}: memory requested vs peak"),
        _plot(_box({"requested": col("vcpus"), "used": col("used_vcpus")}, "vCPUs"), f"p{n}-cpu",
              f"{name}: vCPUs requested vs used"),
        _plot(_box({"staged in": col("bytes_in", scale), "staged out": col("bytes_out", scale)}, unit),
              f"p{n}-bytes", f"{name}: data staged in and out"),
    ]
    return f'<h3>Pipeline {_e(name)} ({len(attempts)} attempts)</h3><div class="plots">{"".join(plots)}</div>'


def _sample_table(samples: list[Sample]) -> str:
    head = ("sample", "index", "status", "class", "exit", "reason", "attempts", "queue wait s", "run s", "peak MiB",
            "vCPUs used", "cost", "log")
    rows = []
    for s in samples:
        run = sum(a.get("run_s") or 0 for a in s.attempts)
        wait = sum(a.get("queue_wait_s") or 0 for a in s.attempts)
        peaks = [a["peak_memory_mib"] for a in s.attempts if a.get("peak_memory_mib") is not None]
        used = [a["used_vcpus"] for a in s.attempts if a.get("used_vcpus") is not None]
        failed = [a for a in s.attempts if a.get("exit_code") not in (0, None)]
        exit_code = failed[-1]["exit_code"] if s.status == "FAILED" and failed else ""
        cells = (s.label, s.index, s.status, s.failure, exit_code, s.reason, len(s.attempts), f"{wait:.1f}", f"{run:.1f}",
                 max(peaks) if peaks else "", max(used) if used else "", money(s.cost_usd), s.log_command)
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return ('<table class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _failure_groups(samples: list[Sample]) -> str:
    groups = failures_by_reason(samples)
    if not groups:
        return "<p>No sample failed.</p>"
    items = []
    for failure, reason, members in groups:
        logs = "".join(f"<li><code>{_e(m.log_command)}</code> ({_e(m.label)})</li>" for m in members)
        items.append(f"<li><b>{len(members)} × {_e(failure)}</b>: {_e(reason)}<ul>{logs}</ul></li>")
    return f"<ul>{''.join(items)}</ul>"


def _timeline(report: Report) -> go.Figure:
    attempts = [a for a in report.attempts if a.get("started_at") and a.get("run_s") is not None]
    fig = go.Figure()
    if not attempts:
        return fig
    from labbatch_contract.measures import parse_time

    zero = min(parse_time(a["started_at"]) for a in attempts)
    for outcome, colour in OUTCOME_COLOURS.items():
        chosen = [a for a in attempts if _outcome(a) == outcome]
        if not chosen:
            continue
        fig.add_trace(go.Bar(
            orientation="h", name=outcome, marker_color=colour,
            y=[f"{a['sample']} ({a['job_id'][-6:]})" for a in chosen], x=[max(a["run_s"], 0.05) for a in chosen],
            base=[(parse_time(a["started_at"]) - zero).total_seconds() for a in chosen],
            text=[f"attempt {a.get('attempt')} {a.get('market') or ''}" for a in chosen], textposition="inside",
            hovertext=[_attempt_words(a) for a in chosen], hoverinfo="text"))
    fig.update_layout(barmode="overlay", xaxis_title="seconds since the first attempt started")
    return fig


def _attempt_words(a: dict[str, Any]) -> str:
    """What hovering over an attempt's bar says: which job, how it ended, in the tool's words."""
    ended = "succeeded" if a.get("succeeded") else (a.get("failure") or "failed")
    code = f", exit {a['exit_code']}" if a.get("exit_code") is not None else ""
    tail = f"<br>{html.escape(a['stderr_tail'])}" if a.get("stderr_tail") else ""
    return (f"{html.escape(str(a['sample']))} ({a['job_id']}), attempt {a.get('attempt')} on {a.get('market') or '?'}: "
            f"{ended}{code}, {a.get('run_s', 0):.1f} s{tail}")


def _outcome(attempt: dict[str, Any]) -> str:
    if attempt.get("succeeded"):
        return "succeeded"
    if attempt.get("failure") in (SPOT_RECLAIMED, OUT_OF_MEMORY):
        return attempt["failure"]
    return "failed"


def _rightsizing(report: Report) -> str:
    parts = [f'<p class="rule">{_e(rightsizing.RULE)}</p>']
    for rec in report.recommendations:
        if rec.memory_mib is None:
            parts.append(f"<h3>{_e(rec.pipeline)}</h3><p>No recommendation: {_e(rec.reason)}.</p>")
            continue
        saving = "" if rec.saving_usd is None else (
            f" At the observed volume this {'saves' if rec.saving_usd >= 0 else 'costs'} "
            f"{money(abs(rec.saving_usd))}.")
        change = (f"<p>Change the lab file:</p><pre>{_e(rec.lab_change)}</pre>" if rec.lab_change
                  else "<p>The request is already right.</p>")
        note = f" ({_e(rec.reason)})" if rec.reason else ""
        parts.append(f"<h3>{_e(rec.pipeline)}</h3><p>From {rec.samples} successful attempts: ask for "
                     f"<b>{rec.vcpus} vCPUs and {rec.memory_mib} MiB</b> (now {rec.current_vcpus} vCPUs, "
                     f"{rec.current_memory_mib} MiB){note}.{_e(saving)}</p>{change}")
    return "".join(parts)


def render(report: Report, *, title: str) -> str:
    counts, costs, wall = report.counts(), report.costs(), report.wall_seconds()
    classes = ", ".join(f"{n} {c}" for c, n in counts["failed_by_class"].items()) or "none"
    summary = (
        '<table><tbody>'
        f"<tr><th>jobs</th><td class=num>{counts['jobs']}</td></tr>"
        f"<tr><th>samples</th><td class=num>{counts['samples']}</td></tr>"
        f"<tr><th>succeeded</th><td class=num>{counts['succeeded']}</td></tr>"
        f"<tr><th>failed</th><td class=num>{counts['failed']} ({_e(classes)})</td></tr>"
        f"<tr><th>attempts</th><td class=num>{counts['attempts']}</td></tr>"
        f"<tr><th>wall time</th><td class=num>{'' if wall is None else f'{wall:.1f} s'}</td></tr>"
        f"<tr><th>cost (as run)</th><td class=num>{money(costs['total_usd'])} "
        f"({money(costs['per_sample_usd'])} per sample)</td></tr>"
        f"<tr><th>all on spot</th><td class=num>{money(costs['all_spot_usd'])} "
        f"({money(costs['per_sample_spot_usd'])} per sample)</td></tr>"
        f"<tr><th>all on-demand</th><td class=num>{money(costs['all_on_demand_usd'])} "
        f"({money(costs['per_sample_on_demand_usd'])} per sample)</td></tr>"
        "</tbody></table>"
        f'<p class="rule">{_e(report.book.rule)}</p>')
    pipelines = "".join(pipeline_section(name, attempts, n)
                        for n, (name, attempts) in enumerate(report.pipelines().items()))
    arrays = "".join(f"<h3>Array job {_e(job_id)} ({len(samples)} samples ended)</h3>"
                     f"<h4>Failures by reason</h4>{_failure_groups(samples)}<h4>Samples</h4>{_sample_table(samples)}"
                     for job_id, samples in report.array_jobs.items())
    singles = [s for s in report.samples if s.index is None]
    single_section = (f"<h2>Single jobs</h2><h4>Failures by reason</h4>{_failure_groups(singles)}"
                      f"{_sample_table(singles)}" if singles else "")
    payload = json.dumps(data(report)).replace("</", "<\\/")
    timeline = _plot(_timeline(report), "timeline", "Attempts over time").replace(
        'class="plot"', 'class="plot" style="width:1150px;height:480px"', 1)
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{_e(title)}</h1><h2>Summary</h2>{summary}"
        f"<h2>Per pipeline</h2>{pipelines or '<p>No attempts with figures.</p>'}"
        f"<h2>Array jobs</h2>{arrays or '<p>None.</p>'}{single_section}"
        f"<h2>Right-sizing</h2>{_rightsizing(report)}"
        f"<h2>Timeline of attempts</h2><div class=plots>{timeline}</div>"
        f'<script type="application/json" id="labbatch-report-data">{payload}</script>'
        f"<script>{SORT_SCRIPT}</script></body></html>")
