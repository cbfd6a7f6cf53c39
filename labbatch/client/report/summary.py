"""From gathered figures to what the page shows: samples, attempts, costs, counts.

A sample is a single job together with the jobs LabBatch resubmitted it as (its recovery
chain), or one child of an array job. Its attempts are every Batch attempt of those, in order;
its status, class and reason are its last job's (or child's). Every number on the page is
computed here, once, so the page and the tests read the same figures.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping

from labbatch.client.report import costing, rightsizing
from labbatch.client.report.gather import Gathered
from labbatch_contract.measures import FIGURES, parse_time, used_vcpus


@dataclass
class Sample:
    pipeline: str
    job_id: str  # the first job of its chain, or the array job
    label: str  # sample name, or job name, or job id
    status: str
    failure: str | None
    reason: str | None
    attempts: list[dict[str, Any]]  # figures, each with job_id, pipeline, sample, succeeded, cost_usd
    index: int | None = None  # an array child's
    log_command: str = ""

    @property
    def cost_usd(self) -> float:
        return sum(a["cost_usd"] for a in self.attempts)


@dataclass
class Report:
    samples: list[Sample]
    jobs: int
    book: costing.PriceBook
    lab_file: str
    array_jobs: dict[str, list[Sample]] = field(default_factory=dict)
    recommendations: list[rightsizing.Recommendation] = field(default_factory=list)

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return [a for s in self.samples for a in s.attempts]

    def counts(self) -> dict[str, Any]:
        final = Counter(s.status for s in self.samples)
        classes = Counter(s.failure or "unclassified" for s in self.samples if s.status == "FAILED")
        return {"jobs": self.jobs, "samples": len(self.samples), "succeeded": final.get("SUCCEEDED", 0),
                "failed": final.get("FAILED", 0), "failed_by_class": dict(sorted(classes.items())),
                "attempts": len(self.attempts)}

    def wall_seconds(self) -> float | None:
        starts = [parse_time(a.get("started_at")) for a in self.attempts]
        stops = [parse_time(a.get("stopped_at")) for a in self.attempts]
        starts, stops = [t for t in starts if t], [t for t in stops if t]
        return (max(stops) - min(starts)).total_seconds() if starts and stops else None

    def costs(self) -> dict[str, float]:
        attempts = self.attempts
        total = sum(a["cost_usd"] for a in attempts)
        spot = sum(costing.attempt_cost(self.book, a, market=costing.SPOT) for a in attempts)
        on_demand = sum(costing.attempt_cost(self.book, a, market=costing.ON_DEMAND) for a in attempts)
        n = len(self.samples) or 1
        return {"total_usd": total, "all_spot_usd": spot, "all_on_demand_usd": on_demand,
                "per_sample_usd": total / n, "per_sample_spot_usd": spot / n,
                "per_sample_on_demand_usd": on_demand / n}

    def pipelines(self) -> dict[str, list[dict[str, Any]]]:
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in self.attempts:
            by[a["pipeline"]].append(a)
        return dict(sorted(by.items()))


def build(found: Gathered, book: costing.PriceBook, *, lab_file: str,
          requests: Mapping[str, tuple[int, int]] | None = None) -> Report:
    """`requests`: pipeline -> (vcpus, memory_mib) the lab file asks for now, for right-sizing."""
    samples: list[Sample] = []
    array_jobs: dict[str, list[Sample]] = {}
    recovered = {job.get("recovered_by") for job in found.jobs.values()} - {None}
    for job_id, job in found.jobs.items():
        if job_id in recovered and job.get("recovered_from") in found.jobs:
            continue  # part of its failed job's chain
        if job.get("array_size"):
            rows = [_child_sample(book, job, child) for child in found.children.get(job_id, [])]
            array_jobs[job_id] = rows
            samples += rows
        else:
            samples.append(_chain_sample(book, found, job))
    report = Report(samples, len(found.jobs), book, lab_file, array_jobs)
    for pipeline, attempts in report.pipelines().items():
        current = (requests or {}).get(pipeline, (None, None))
        report.recommendations.append(rightsizing.recommend(
            pipeline, attempts, lab_file=lab_file, current_vcpus=current[0], current_memory_mib=current[1],
            price=lambda a, vcpus, memory: costing.attempt_cost(book, a, vcpus=vcpus, memory_mib=memory)))
    return report


def _attempts(book: costing.PriceBook, job: Mapping[str, Any], figures: list[dict[str, Any]], *, label: str,
              succeeded: bool) -> list[dict[str, Any]]:
    rows = []
    for number, row in enumerate(figures, start=1):
        row = dict(row, job_id=job["job_id"], pipeline=job.get("pipeline") or "?", sample=label,
                   succeeded=succeeded and number == len(figures) and row.get("exit_code") == 0,
                   # Priced on the job's own pool, with its GPUs (older records: its pipeline's).
                   pool=book.pool_of(job), gpus=job.get("gpus") or book.pipeline_gpus.get(job.get("pipeline"), 0))
        row["cost_usd"] = costing.attempt_cost(book, row)
        row["used_vcpus"] = used_vcpus(row)
        rows.append(row)
    return rows


def _chain_sample(book: costing.PriceBook, found: Gathered, job: Mapping[str, Any]) -> Sample:
    chain = [job]
    while chain[-1].get("recovered_by") in found.jobs:
        chain.append(found.jobs[chain[-1]["recovered_by"]])
    last = chain[-1]
    label = job.get("name") or job["job_id"]
    attempts = []
    for link in chain:
        attempts += _attempts(book, link, list(link.get(FIGURES) or []), label=label,
                              succeeded=link.get("status") == "SUCCEEDED")
    failed = [a for a in attempts if a.get("exit_code") != 0]
    reason = None
    if last.get("status") == "FAILED":
        reason = (failed[-1].get("stderr_tail") if failed else None) or last.get("status_reason")
    return Sample(job.get("pipeline") or "?", job["job_id"], label, last.get("status", "?"),
                  last.get("failure") if last.get("status") == "FAILED" else None, reason, attempts,
                  log_command=f"labbatch logs {last['job_id']}")


def _child_sample(book: costing.PriceBook, job: Mapping[str, Any], child: Mapping[str, Any]) -> Sample:
    label = child.get("sample") or f"#{child['index']}"
    attempts = _attempts(book, job, list(child.get(FIGURES) or []), label=label,
                         succeeded=child.get("status") == "SUCCEEDED")
    for row in attempts:
        row["index"] = child["index"]
    failed = child.get("status") == "FAILED"
    # The index keeps no class or reason of its own: they are the last attempt's.
    last = attempts[-1] if attempts else {}
    return Sample(job.get("pipeline") or "?", job["job_id"], label, child.get("status", "?"),
                  last.get("failure") if failed else None, last.get("stderr_tail") if failed else None, attempts,
                  index=child["index"], log_command=f"labbatch logs {job['job_id']} --child {child['index']}")


def failures_by_reason(samples: list[Sample]) -> list[tuple[str, str, list[Sample]]]:
    """(class, reason, samples) of the failed samples, largest group first."""
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for sample in samples:
        if sample.status == "FAILED":
            groups[(sample.failure or "unclassified", sample.reason or "no reason given")].append(sample)
    return sorted(((c, r, s) for (c, r), s in groups.items()), key=lambda g: (-len(g[2]), g[0], g[1]))
