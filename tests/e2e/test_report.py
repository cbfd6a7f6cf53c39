"""`labbatch report` end to end in local mode (issue 27): an array job with a failing sample, an
out-of-memory attempt recovered with more memory, and a spot job reclaimed on every attempt and
recovered on demand. The report's numbers equal what this test computes from the runner's
manifests, the jobs' Batch attempts and the price table; the page opens in headless Chromium
with every plot drawn, no console error and nothing fetched from the network."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e import conftest
from tests.e2e.conftest import LABBATCH, start_local
from tests.e2e.test_failed_children import FASTQ
from tests.e2e.test_local_mode import READS_A, fastq, wait

ROOT = Path(__file__).resolve().parents[2]
PRICES = json.loads((ROOT / "labbatch" / "lab" / "data" / "prices.json").read_text())
MIB = 1024 * 1024
# labs/example.yaml's first instance type is m6i.large: 2 vCPUs, 8 GiB, so 4 GiB per vCPU.
GIB_PER_VCPU = 4


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The three kinds of run, finished; the lab stays up for the report."""
    tmp = tmp_path_factory.mktemp("report")
    labs = conftest.test_labs_dir(tmp)
    lab = start_local(tmp, "--spot-interruptions", "1.0", "--seed", "5", labs_dir=labs)
    try:
        client = lab.client()
        samples = [{"name": name, "inputs": [lab.put("inputs", f"report/{name}.fq.gz", body)]}
                   for name, body in (("good-1", gzip.compress(FASTQ)), ("corrupt", FASTQ),
                                      ("good-2", gzip.compress(FASTQ)))]
        array = client.submit("fastq-stats", samples=samples, queue="on-demand")
        hog = client.submit("hog", [lab.put("inputs", "report/hog.txt", b"x")], queue="on-demand",
                            parameters={"mib": "1300"})
        spot = client.submit("brief-stats", [lab.put("inputs", "report/a.fastq", fastq(READS_A))], queue="spot")
        jobs = {}
        for name, job in (("array", array), ("hog", hog), ("spot", spot)):
            chain = [wait(client, job["job_id"], timeout=180)]
            while chain[-1].get("recovered_by"):
                chain.append(wait(client, chain[-1]["recovered_by"], timeout=180))
            jobs[name] = chain
        assert jobs["array"][0]["status"] == "FAILED"
        assert [j["failure"] for j in jobs["hog"]] == ["out_of_memory", None]
        assert [j["failure"] for j in jobs["spot"]] == ["spot_reclaimed", None]
        assert jobs["hog"][-1]["status"] == jobs["spot"][-1]["status"] == "SUCCEEDED"
        yield lab, labs, jobs
    finally:
        lab.stop()


def labbatch(lab, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LABBATCH_ENDPOINT"}
    env.update(LABBATCH_HOME=str(lab.home))
    return subprocess.run([LABBATCH, *args], capture_output=True, text=True, env=env, timeout=180)


def seconds(start: str, stop: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return round((datetime.strptime(stop, fmt) - datetime.strptime(start, fmt)).total_seconds(), 3)


def cost(run_s: float, vcpus: int, memory_mib: int, queue: str) -> float:
    region = PRICES["regions"]["us-east-1"]
    vcpu_hour = region["on_demand_vcpu_hour"]["m6i"]
    if queue == "spot":
        vcpu_hour *= 1 - region["usage"]["spot_typical_discount"]
    return run_s / 3600 * max(vcpus, memory_mib / 1024 / GIB_PER_VCPU) * vcpu_hour


def manifest_figures(lab, prefix: str) -> dict:
    m = lab.read_json(prefix + "manifest.json")
    return {"peak_memory_mib": round(m["peak_memory_bytes"]["tool"] / MIB, 1),
            "bytes_in": sum(i["size"] for i in m["inputs"]), "bytes_out": sum(o["size"] for o in m["outputs"]),
            "exit_code": m["exit_code"], "cpu_s": m["tool"]["cpu_seconds"]}


@pytest.fixture(scope="module")
def report(ran, tmp_path_factory):
    lab, labs, jobs = ran
    out = tmp_path_factory.mktemp("page") / "report.html"
    ids = [jobs["array"][0]["job_id"], jobs["hog"][0]["job_id"], jobs["spot"][0]["job_id"]]
    done = labbatch(lab, "report", *ids, "-o", str(out), "--labs-dir", str(labs), "--json")
    assert done.returncode == 0, done.stderr
    assert f"Report: {out}" in done.stderr
    return json.loads(done.stdout), out


def test_the_reports_numbers_are_the_manifests_the_attempts_and_the_price_table(ran, report):
    lab, _, jobs = ran
    data, _ = report
    client = lab.client()
    array = jobs["array"][0]
    expected_cost = 0.0
    # Array children: one attempt each; their own times; the manifest under <prefix><sample>/.
    for index, name in enumerate(("good-1", "corrupt", "good-2")):
        child = client.child(array["job_id"], index)
        [row] = [s for s in data["samples"] if s["job_id"] == array["job_id"] and s["index"] == index]
        assert (row["sample"], row["status"]) == (name, "FAILED" if name == "corrupt" else "SUCCEEDED")
        [attempt] = row["attempts"]
        run_s = seconds(child["started_at"], child["stopped_at"])
        assert attempt["run_s"] == run_s
        measured = manifest_figures(lab, f"{array['output_prefix']}{name}/")
        assert {k: attempt.get(k) for k in measured} == measured
        assert row["cost_usd"] == pytest.approx(cost(run_s, array["vcpus"], array["memory_mib"], "on-demand"), rel=1e-9)
        expected_cost += row["cost_usd"]
        if name == "corrupt":
            assert row["failure"] == "application" and "Not a gzipped file" in row["reason"]
            assert row["log_command"] == f"labbatch logs {array['job_id']} --child 1"
    # Recovery chains: every Batch attempt of every job in the chain, each at its own request and queue.
    for name in ("hog", "spot"):
        chain = jobs[name]
        [row] = [s for s in data["samples"] if s["job_id"] == chain[0]["job_id"]]
        assert row["status"] == "SUCCEEDED" and row["failure"] is None
        want = [(job["job_id"], seconds(a["started_at"], a["stopped_at"]), job["vcpus"], job["memory_mib"], job["queue"])
                for job in chain for a in job["attempts"]]
        got = [(a["job_id"], a["run_s"], a["vcpus"], a["memory_mib"], a["market"]) for a in row["attempts"]]
        assert got == want
        assert row["cost_usd"] == pytest.approx(sum(cost(r, v, m, q) for _, r, v, m, q in want), rel=1e-9)
        expected_cost += row["cost_usd"]
        last = manifest_figures(lab, chain[-1]["output_prefix"])
        assert {k: row["attempts"][-1].get(k) for k in last} == last
    hog_attempts = [s for s in data["samples"] if s["job_id"] == jobs["hog"][0]["job_id"]][0]["attempts"]
    assert [(a["memory_mib"], a.get("failure")) for a in hog_attempts] == [(1024, "out_of_memory"), (1536, None)]
    spot_attempts = [s for s in data["samples"] if s["job_id"] == jobs["spot"][0]["job_id"]][0]["attempts"]
    assert [a.get("failure") for a in spot_attempts] == ["spot_reclaimed"] * 3 + [None]

    assert data["counts"] == {"jobs": 5, "samples": 5, "succeeded": 4, "failed": 1,
                              "failed_by_class": {"application": 1}, "attempts": 3 + 2 + 4}
    assert data["costs"]["total_usd"] == pytest.approx(expected_cost, rel=1e-9)
    assert data["costs"]["per_sample_usd"] == pytest.approx(expected_cost / 5, rel=1e-9)


def test_status_and_why_of_the_oom_job_show_its_exit_code(ran):
    lab, _, jobs = ran
    why = labbatch(lab, "why", jobs["hog"][0]["job_id"])
    assert why.returncode == 0, why.stderr
    assert "exit 137" in why.stdout


CHROMIUM = shutil.which("chromium")
# Runs after the page's own scripts: what it drew, what went wrong, and what it fetched.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
var __error = console.error; console.error = function () { window.__errors.push([].join.call(arguments, ' ')); __error.apply(console, arguments); };
window.addEventListener('load', function () { setTimeout(function () {
  var plots = Array.from(document.querySelectorAll('.plotly-graph-div')).map(function (d) {
    var svg = d.querySelector('svg.main-svg');
    return {id: d.id, svg: !!svg, marks: d.querySelectorAll('.trace, .point, .bars path, .boxlayer path').length,
            width: svg ? svg.getBoundingClientRect().width : 0};
  });
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({errors: window.__errors, plots: plots,
    fetched: performance.getEntriesByType('resource').map(function (r) { return r.name; })});
  document.body.appendChild(pre);
}, 500); });
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess:
    # Every host name resolves to nothing: a page that fetched from the network would fail to.
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it")
def test_the_page_opens_in_headless_chromium_with_every_plot_drawn_and_nothing_fetched(report, tmp_path):
    assert CHROMIUM is not None, "CI=true: chromium must be installed (.ci/run installs it)"
    _, page = report
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    dumped = chromium("--dump-dom", probed.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    start = dumped.stdout.index('<pre id="probe">') + len('<pre id="probe">')
    import html as html_lib

    probe = json.loads(html_lib.unescape(dumped.stdout[start:dumped.stdout.index("</pre>", start)]))
    assert probe["errors"] == []
    assert all(url.startswith("file:") or url.startswith("data:") for url in probe["fetched"]), probe["fetched"]
    plots = probe["plots"]
    # Four per pipeline (three pipelines) and the timeline.
    assert len(plots) == 3 * 4 + 1, plots
    assert all(p["svg"] and p["marks"] > 0 and p["width"] > 0 for p in plots), plots
    shot = tmp_path / "report.png"
    shown = chromium("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert shown.returncode == 0 and shot.stat().st_size > 10_000, shown.stderr[-3000:]


def test_a_report_of_one_pipeline_since_a_moment_finds_its_jobs_and_their_recoveries(ran, tmp_path):
    lab, labs, jobs = ran
    done = labbatch(lab, "report", "--since", "1h", "--pipeline", "hog", "-o", str(tmp_path / "hog.html"),
                    "--labs-dir", str(labs), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(s["job_id"], s["status"], len(s["attempts"])) for s in data["samples"]] == [
        (jobs["hog"][0]["job_id"], "SUCCEEDED", 2)]
    assert data["counts"]["jobs"] == 2
    nothing = labbatch(lab, "report", "--since", "1h", "--pipeline", "no-such-pipeline", "-o", str(tmp_path / "n.html"),
                       "--labs-dir", str(labs))
    assert nothing.returncode != 0 and "nothing_to_report" in nothing.stderr
