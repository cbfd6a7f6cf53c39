"""Array jobs' failed children: named with their sample, class, reason and log on GET /jobs/{id},
paged through GET /jobs/{id}/children, addressed by index or sample name; and an array parent
that reads RUNNING while its children run (tests/batch_events/array_job_failed_child.json)."""

from __future__ import annotations

import copy
import json

from tests.api_lab import INPUTS_BUCKET, RESULTS_BUCKET
from test_status_updater import EVENTS, BATCH_JOB_ID, pending_record, record, view

SAMPLES = ["s-alpha", "s-broken", "s-gamma"]
TOOL_ERROR = ("tool 'fastq-stats' exited with 1: fastq-stats: error: input '/scratch/in/s-broken.fq.gz' "
              "could not be read: Not a gzipped file (b'@r')")


def events_for(job_id: str) -> list[dict]:
    text = ((EVENTS / "array_job_failed_child.json").read_text().replace("{{JOB_ID}}", job_id)
            .replace("{{BATCH_JOB_ID}}", BATCH_JOB_ID).replace("{{INPUTS_BUCKET}}", INPUTS_BUCKET)
            .replace("{{RESULTS_BUCKET}}", RESULTS_BUCKET))
    return json.loads(text)


def array_job(lab, samples: list[str], job_id: str = "j-0000000000000000000000000b") -> str:
    lab.s3.put_object(Bucket=INPUTS_BUCKET, Key=f"work/samples/{job_id}.json",
                      Body=json.dumps([{"name": n, "inputs": [f"s3://{INPUTS_BUCKET}/{n}.fq.gz"]} for n in samples]))
    return pending_record(lab, job_id, array_size=len(samples), children={"SUBMITTED": len(samples)},
                          samples_uri=f"s3://{INPUTS_BUCKET}/work/samples/{job_id}.json",
                          output_prefix=f"s3://{RESULTS_BUCKET}/jobs/{job_id}/")


def put_manifest(lab, job_id: str, sample: str, *, exit_code: int = 1, message: str = TOOL_ERROR) -> str:
    key = f"jobs/{job_id}/{sample}/manifest.json"
    lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=json.dumps({
        "job_id": job_id, "sample": sample, "attempt": 1, "status": "failed", "failed_phase": "run",
        "error": {"code": "tool_failed", "message": message}, "exit_code": exit_code}))
    return f"s3://{RESULTS_BUCKET}/{key}"


def test_a_failed_child_is_named_with_its_sample_class_reason_and_log(lab):
    job_id = array_job(lab, SAMPLES)
    manifest = put_manifest(lab, job_id, "s-broken")
    for event in events_for(job_id):
        lab.deliver(event)

    job = view(lab, job_id)
    assert job["status"] == "FAILED" and job["failure"] == "application"
    assert job["child_failures"] == {"application": 1}
    assert job["failed_children"] == [{
        "job_id": job_id, "index": 1, "sample": "s-broken", "status": "FAILED", "failure": "application",
        "reason": TOOL_ERROR, "exit_code": 1, "manifest": manifest,
        "log": {"group": "/labbatch/example/jobs", "stream": "fastq-stats/default/child1"},
        "started_at": "2026-11-02T10:01:01.000000Z", "stopped_at": "2026-11-02T10:03:20.000000Z"}]
    assert "failed_children_next_token" not in job or job["failed_children_next_token"] is None

    # The same child by index and by sample name; a succeeded one too.
    by_name = lab.call("GET", f"/jobs/{job_id}/children/s-broken")
    by_index = lab.call("GET", f"/jobs/{job_id}/children/1")
    assert by_name.status == by_index.status == 200
    assert by_name.body == by_index.body == job["failed_children"][0]
    first = lab.call("GET", f"/jobs/{job_id}/children/s-alpha").body
    assert (first["index"], first["sample"], first["status"], first.get("failure")) == (0, "s-alpha", "SUCCEEDED", None)
    for missing in ("3", "nobody"):
        answer = lab.call("GET", f"/jobs/{job_id}/children/{missing}")
        assert answer.status == 404 and answer.error["code"] == "no_such_child"


def test_without_a_manifest_the_reason_is_batchs_and_the_sample_still_named(lab):
    job_id = array_job(lab, SAMPLES)
    for event in events_for(job_id):
        lab.deliver(event)

    child = view(lab, job_id)["failed_children"][0]
    assert child["sample"] == "s-broken" and child["failure"] == "application"
    assert child["reason"] == "Essential container in task exited"
    assert child["manifest"].endswith(f"/jobs/{job_id}/s-broken/manifest.json")


def test_another_attempts_manifest_says_nothing_about_this_one(lab):
    job_id = array_job(lab, SAMPLES)
    put_manifest(lab, job_id, "s-broken", exit_code=3, message="from an older attempt")
    for event in events_for(job_id):
        lab.deliver(event)
    assert view(lab, job_id)["failed_children"][0]["reason"] == "Essential container in task exited"


def test_many_failed_children_come_a_page_at_a_time(lab):
    samples = [f"s{i:02d}" for i in range(25)]
    job_id = array_job(lab, samples)
    failed = next(e for e in events_for(job_id) if e["detail"]["status"] == "FAILED"
                  and (e["detail"].get("arrayProperties") or {}).get("index") == 1)
    for index in reversed(range(25)):
        event = copy.deepcopy(failed)
        event["detail"]["jobId"] = f"{BATCH_JOB_ID}:{index}"
        event["detail"]["arrayProperties"]["index"] = index
        assert lab.deliver(event)["failure"] == "application"

    job = view(lab, job_id)
    assert [c["index"] for c in job["failed_children"]] == list(range(10))
    assert [c["sample"] for c in job["failed_children"]] == samples[:10]
    assert job["child_failures"] == {"application": 25}
    token = job["failed_children_next_token"]
    seen = [c["index"] for c in job["failed_children"]]
    while token:
        page = lab.call("GET", f"/jobs/{job_id}/children", query={"status": "FAILED", "limit": "10",
                                                                  "next_token": token})
        assert page.status == 200, page.body
        assert len(page.body["children"]) <= 10
        seen += [c["index"] for c in page.body["children"]]
        token = page.body.get("next_token")
    assert seen == list(range(25))
    whole = lab.call("GET", f"/jobs/{job_id}/children", query={"limit": "100"}).body
    assert [c["sample"] for c in whole["children"]] == samples and whole.get("next_token") is None

    bad = lab.call("GET", f"/jobs/{job_id}/children", query={"next_token": "bm9wZQ"})
    assert bad.status == 422 and bad.error["code"] == "invalid_next_token"
    assert lab.call("GET", f"/jobs/{job_id}/children", query={"status": "SUCCEEDED"}).status == 422


def test_a_plain_job_has_no_children(lab):
    job_id = pending_record(lab)
    answer = lab.call("GET", f"/jobs/{job_id}/children")
    assert answer.status == 404 and answer.error["code"] == "not_an_array_job"
    assert lab.call("GET", f"/jobs/{job_id}/children/0").error["code"] == "not_an_array_job"


def test_an_array_parent_is_running_while_its_children_run(lab):
    job_id = array_job(lab, SAMPLES)
    events = events_for(job_id)
    parent_pending = events[1]
    first_child_running = next(i for i, e in enumerate(events)
                               if e["detail"]["status"] == "RUNNING" and e["detail"].get("arrayProperties", {}).get("index") is not None)
    for event in events[:first_child_running]:
        lab.deliver(event)
    assert record(lab, job_id)["status"] == "PENDING"

    lab.deliver(events[first_child_running])
    job = view(lab, job_id)
    assert job["status"] == "RUNNING" and job["started_at"]
    assert lab.call("GET", "/jobs", query={"status": "RUNNING"}).body["jobs"][0]["job_id"] == job_id
    # Batch's parent says PENDING again: the ledger stays RUNNING.
    assert not lab.deliver(parent_pending)["applied"]
    assert record(lab, job_id)["status"] == "RUNNING"
    for event in events[first_child_running + 1:]:
        lab.deliver(event)
    assert record(lab, job_id)["status"] == "FAILED"
