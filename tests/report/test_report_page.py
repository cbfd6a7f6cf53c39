"""The report from gathered figures: counts, costs by the stated rule against prices.json read
here, samples with their recovery chains, failures grouped by reason, and a page that needs no
network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labbatch.lab.loader import load_one_lab
from labbatch.client.report import costing, render, summary
from labbatch.client.report.gather import Gathered

ROOT = Path(__file__).resolve().parents[2]
PRICES = json.loads((ROOT / "labbatch" / "lab" / "data" / "prices.json").read_text())


def fig(attempt: int, start: str, stop: str, run_s: float, *, exit_code: int | None = 0, vcpus: int = 1,
        memory_mib: int = 2048, market: str = "on-demand", peak: float | None = 100.0, **more) -> dict:
    row = {"attempt": attempt, "started_at": f"2026-12-01T10:{start}.000000Z", "stopped_at": f"2026-12-01T10:{stop}.000000Z",
           "run_s": run_s, "queue_wait_s": 1.0, "vcpus": vcpus, "memory_mib": memory_mib, "market": market,
           "cpu_s": run_s / 2, "bytes_in": 1000, "bytes_out": 2000, **more}
    if exit_code is not None:
        row["exit_code"] = exit_code
    if peak is not None:
        row["peak_memory_mib"] = peak
    return row


@pytest.fixture
def found() -> Gathered:
    g = Gathered()
    g.jobs["j-oom"] = {"job_id": "j-oom", "pipeline": "hog", "status": "FAILED", "failure": "out_of_memory",
                       "recovered_by": "j-more", "name": "hog-1",
                       "figures": [fig(1, "00:00", "00:10", 10, exit_code=137, memory_mib=1024, peak=1020,
                                       failure="out_of_memory", stderr_tail="OutOfMemoryError")]}
    g.jobs["j-more"] = {"job_id": "j-more", "pipeline": "hog", "status": "SUCCEEDED", "recovered_from": "j-oom",
                        "figures": [fig(1, "00:11", "00:31", 20, memory_mib=1536, peak=1312)]}
    g.jobs["j-spot"] = {"job_id": "j-spot", "pipeline": "stats", "status": "SUCCEEDED",
                        "figures": [fig(1, "00:00", "00:05", 5, exit_code=None, market="spot", peak=None,
                                        stderr_tail="Host EC2 (instance i-1) terminated."),
                                    fig(2, "00:06", "00:16", 10, market="spot")]}
    g.jobs["j-array"] = {"job_id": "j-array", "pipeline": "stats", "status": "FAILED", "failure": "application",
                         "array_size": 3}
    g.children["j-array"] = [
        {"index": 0, "sample": "a", "status": "SUCCEEDED", "figures": [fig(1, "01:00", "01:30", 30)]},
        {"index": 1, "sample": "b", "status": "FAILED",
         "figures": [fig(1, "01:00", "01:04", 4, exit_code=1, failure="application", stderr_tail="tool exited with 1: bad")]},
        {"index": 2, "sample": "c", "status": "SUCCEEDED", "figures": [fig(1, "01:00", "01:40", 40, vcpus=2)]},
    ]
    return g


def assert_self_contained(page: str) -> None:
    """Nothing on the page loads from elsewhere: every script is inline, no tag or style names a
    URL. (plotly.js's own code holds URLs, such as map tile servers for map plots, that the page
    never uses: the headless-browser test checks that nothing is fetched.)"""
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    markup = re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", page, flags=re.DOTALL | re.IGNORECASE)
    assert not re.search(r"(https?:)?//[a-z0-9]", markup, re.IGNORECASE), re.search(r".{80}//[a-z0-9].{80}", markup)
    assert "Plotly.newPlot" in page


def expected_cost(row: dict) -> float:
    usage = PRICES["regions"]["us-east-1"]
    vcpu_hour = usage["on_demand_vcpu_hour"]["m6i"]  # labs/example.yaml's first type: m6i.large, 2 vCPU, 8 GiB
    if row["market"] == "spot":
        vcpu_hour *= 1 - usage["usage"]["spot_typical_discount"]
    return row["run_s"] / 3600 * max(row["vcpus"], row["memory_mib"] / 1024 / 4) * vcpu_hour


def test_counts_samples_and_costs_follow_the_stated_rule(found):
    lab, _ = load_one_lab(ROOT / "labs", "example")
    report = summary.build(found, costing.price_book(lab), lab_file="labs/example.yaml")
    data = render.data(report)
    assert data["counts"] == {"jobs": 4, "samples": 5, "succeeded": 4, "failed": 1,
                              "failed_by_class": {"application": 1}, "attempts": 7}
    by = {(s["job_id"], s["sample"]): s for s in data["samples"]}
    hog = by[("j-oom", "hog-1")]
    assert (hog["status"], hog["failure"], [a["job_id"] for a in hog["attempts"]]) == ("SUCCEEDED", None, ["j-oom", "j-more"])
    assert hog["log_command"] == "labbatch logs j-more"
    assert by[("j-array", "b")]["log_command"] == "labbatch logs j-array --child 1"
    every = [a for s in found.children["j-array"] for a in s["figures"]] + \
        [a for j in found.jobs.values() for a in j.get("figures", [])]
    total = sum(expected_cost(a) for a in every)
    assert data["costs"]["total_usd"] == pytest.approx(total, rel=1e-9)
    assert data["costs"]["per_sample_usd"] == pytest.approx(total / 5, rel=1e-9)
    assert data["costs"]["all_on_demand_usd"] == pytest.approx(
        sum(expected_cost({**a, "market": "on-demand"}) for a in every), rel=1e-9)
    assert data["costs"]["all_spot_usd"] < data["costs"]["all_on_demand_usd"]
    # Too few samples per pipeline here: no recommendation, and it says why.
    assert all(r["memory_mib"] is None and "at least" in r["reason"] for r in data["recommendations"])
    groups = summary.failures_by_reason(report.array_jobs["j-array"])
    assert [(c, r, [s.label for s in m]) for c, r, m in groups] == [("application", "tool exited with 1: bad", ["b"])]


def test_the_page_is_self_contained_and_carries_its_numbers(found, tmp_path):
    lab, _ = load_one_lab(ROOT / "labs", "example")
    report = summary.build(found, costing.price_book(lab), lab_file="labs/example.yaml")
    page = render.render(report, title="t <b>")
    assert "t &lt;b&gt;" in page
    assert_self_contained(page)
    assert "Plotly.newPlot" in page or "Plotly.react" in page
    embedded = re.search(r'<script type="application/json" id="labbatch-report-data">(.*?)</script>', page, re.S)
    assert json.loads(embedded.group(1)) == json.loads(json.dumps(render.data(report)))
    assert report.book.rule in page.replace("&#x27;", "'")
