"""Issue 19 item 3 end to end in local mode: an array job with one corrupt sample (a `.gz` that is
not gzip) names that sample, its class and the tool's own error in `labbatch status` and `labbatch
why`, and `labbatch status JOB:<sample>` / `JOB:<index>` address the child."""

from __future__ import annotations

import gzip
import json
import os
import subprocess

from tests.e2e.conftest import LABBATCH, RunningLab

FASTQ = b"@r1\nACGTACGTAC\n+\nIIIIIIIIII\n@r2\nGGGGCCCCAA\n+\nIIIIIIIIII\n"


def labbatch(lab: RunningLab, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LABBATCH_ENDPOINT"}
    # Wide enough that no table cell wraps the words the test looks for.
    env.update(LABBATCH_HOME=str(lab.home), COLUMNS="400")
    return subprocess.run([LABBATCH, *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_corrupt_sample_is_named_with_its_class_and_the_tools_error(local_lab):
    samples = []
    for name, body in (("good-1", gzip.compress(FASTQ)), ("corrupt", FASTQ), ("good-2", gzip.compress(FASTQ))):
        samples.append({"name": name, "inputs": [local_lab.put("inputs", f"children/{name}.fq.gz", body)]})
    client = local_lab.client()
    job = client.submit("fastq-stats", samples=samples)
    job_id = job["job_id"]
    final = client.wait([job_id], timeout=120, interval=0.3)[job_id]
    assert (final["status"], final["failure"]) == ("FAILED", "application"), final
    record = client.get(job_id)
    [child] = record["failed_children"]
    assert (child["index"], child["sample"], child["failure"]) == (1, "corrupt", "application")
    assert "Not a gzipped file" in child["reason"], child
    assert child["log"]["group"] and child["log"]["stream"]
    assert child["manifest"].endswith(f"/jobs/{job_id}/corrupt/manifest.json")
    assert local_lab.read_json(child["manifest"])["sample"] == "corrupt"
    assert record["child_failures"] == {"application": 1}
    assert {k: v for k, v in record["children"].items() if v} == {"SUCCEEDED": 2, "FAILED": 1}

    status = labbatch(local_lab, "status", job_id)
    assert status.returncode == 0, status.stderr
    assert "corrupt" in status.stdout and "application" in status.stdout
    assert "Not a gzipped file" in status.stdout

    why = labbatch(local_lab, "why", job_id)
    assert why.returncode == 0, why.stderr
    assert "Failed children: 1 of 3 (1 application)" in why.stdout
    assert "1 corrupt (application): tool 'fastq-stats' exited with 1" in why.stdout
    assert "Not a gzipped file" in why.stdout

    by_sample = labbatch(local_lab, "status", f"{job_id}:corrupt")
    assert by_sample.returncode == 0, by_sample.stderr
    assert "Not a gzipped file" in by_sample.stdout and "application" in by_sample.stdout
    as_json = json.loads(labbatch(local_lab, "status", "--json", f"{job_id}:1").stdout)
    assert as_json == child
    why_child = labbatch(local_lab, "why", f"{job_id}:corrupt")
    assert why_child.stdout.startswith(f"{job_id}:1 (sample corrupt) FAILED (application): tool 'fastq-stats'")
    good = json.loads(labbatch(local_lab, "status", "--json", f"{job_id}:good-2").stdout)
    assert (good["index"], good["status"], good.get("failure")) == (2, "SUCCEEDED", None)
    missing = labbatch(local_lab, "status", f"{job_id}:nobody")
    assert missing.returncode != 0 and "no_such_child" in missing.stderr
