"""Measured figures per attempt: written into the ledger by the status updater as jobs and array
children end (from the Batch event and the runner's manifest), served by GET /jobs/{id}/report
and GET /report from the ledger alone."""

from __future__ import annotations

import json

from tests.api_lab import RESULTS_BUCKET
from test_failed_children import SAMPLES, TOOL_ERROR, array_job, events_for
from test_status_updater import load_events as _load_events, pending_record, record

MIB = 1024 * 1024


def ledger_figures(lab, job_id: str) -> list[dict]:
    from labbatch_contract.measures import decode_figures

    stored = record(lab, job_id)["figures"]
    assert isinstance(stored, str)  # one compact attribute, not nested maps
    return decode_figures(stored)


def named(answer, row: dict) -> list[dict]:
    """A report answer's figures (arrays) as maps, by the field names the answer sends."""
    return [dict((k, v) for k, v in zip(answer.body["figure_fields"], values) if v is not None)
            for values in row["figures"]]


def load_events(name: str, job_id: str) -> list[dict]:
    """These recordings name the results bucket of the lab they were taken from."""
    return json.loads(json.dumps(_load_events(name, job_id)).replace("labbatch-example-results", RESULTS_BUCKET))


def manifest(job_id: str, *, attempt: int, exit_code: int, peak_mib: int, cpu: float, sizes_in: list[int],
             sizes_out: list[int], message: str | None = None) -> bytes:
    return json.dumps({
        "job_id": job_id, "attempt": attempt, "status": "failed" if exit_code else "succeeded",
        "exit_code": exit_code, "error": {"code": "tool_failed", "message": message} if message else None,
        "tool": {"exit_code": exit_code, "cpu_seconds": cpu},
        "inputs": [{"uri": f"s3://x/{i}", "size": s} for i, s in enumerate(sizes_in)],
        "outputs": [{"path": f"o{i}", "key": f"o{i}", "size": s} for i, s in enumerate(sizes_out)],
        "peak_memory_bytes": {"tool": peak_mib * MIB, "runner": 50 * MIB}}).encode()


def test_a_retried_job_keeps_figures_for_each_attempt_and_its_manifests_for_the_last(lab):
    job_id = pending_record(lab)
    lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=f"jobs/{job_id}/manifest.json",
                      Body=manifest(job_id, attempt=2, exit_code=0, peak_mib=700, cpu=400.0,
                                    sizes_in=[1000, 24], sizes_out=[10, 20, 30]))
    events = load_events("plain_job_retried_then_succeeded.json", job_id)
    for event in events:
        lab.deliver(event)

    final = events[-1]["detail"]
    created = final["createdAt"] / 1000
    (a1, a2) = final["attempts"]
    figures = ledger_figures(lab, job_id)
    assert [f["attempt"] for f in figures] == [1, 2]
    first, second = figures
    assert first["queue_wait_s"] == a1["startedAt"] / 1000 - created
    assert first["run_s"] == (a1["stoppedAt"] - a1["startedAt"]) / 1000
    assert second["queue_wait_s"] == (a2["startedAt"] - a1["stoppedAt"]) / 1000
    assert second["run_s"] == (a2["stoppedAt"] - a2["startedAt"]) / 1000
    # The reclaimed attempt says why it ended; it has no manifest figures (its manifest was overwritten).
    assert first["stderr_tail"] == a1["statusReason"]
    assert first["failure"] == "spot_reclaimed" and "failure" not in second
    assert "peak_memory_mib" not in first and "bytes_in" not in first
    assert second["exit_code"] == 0 and "stderr_tail" not in second
    assert (second["peak_memory_mib"], second["cpu_s"], second["bytes_in"], second["bytes_out"]) == (700, 400.0, 1024, 60)
    assert {f["vcpus"] for f in figures} == {1} and {f["memory_mib"] for f in figures} == {2048}
    assert {f["market"] for f in figures} == {"spot"}

    answer = lab.call("GET", f"/jobs/{job_id}/report")
    assert answer.status == 200, answer.body
    assert named(answer, answer.body["job"]) == figures
    assert answer.body["job"]["status"] == "SUCCEEDED" and "children" not in answer.body


def test_another_attempts_manifest_adds_nothing(lab):
    job_id = pending_record(lab)
    lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=f"jobs/{job_id}/manifest.json",
                      Body=manifest(job_id, attempt=1, exit_code=0, peak_mib=700, cpu=1.0, sizes_in=[1], sizes_out=[1]))
    for event in load_events("plain_job_retried_then_succeeded.json", job_id):
        lab.deliver(event)
    assert "peak_memory_mib" not in ledger_figures(lab, job_id)[-1]


def test_array_children_figures_are_read_back_a_page_at_a_time_in_index_order(lab, monkeypatch):
    from labbatch_contract import measures

    # Two rows a block, so that three children make two blocks and a page of one block is short.
    monkeypatch.setattr(measures, "REPORT_BLOCK", 2)
    job_id = array_job(lab, SAMPLES)
    for index, sample in enumerate(SAMPLES):
        failed = sample == "s-broken"
        lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=f"jobs/{job_id}/{sample}/manifest.json",
                          Body=manifest(job_id, attempt=1, exit_code=1 if failed else 0, peak_mib=100 + index,
                                        cpu=10.0 * index, sizes_in=[index + 1], sizes_out=[2 * index],
                                        message=TOOL_ERROR if failed else None))
    for event in events_for(job_id):
        lab.deliver(event)

    whole = lab.call("GET", f"/jobs/{job_id}/report")
    assert whole.status == 200, whole.body
    assert whole.body["next_token"] is None
    children = whole.body["children"]
    assert [(c["index"], c["sample"], c["status"]) for c in children] == [
        (0, "s-alpha", "SUCCEEDED"), (1, "s-broken", "FAILED"), (2, "s-gamma", "SUCCEEDED")]
    firsts = [named(whole, c)[0] for c in children]
    assert [f["peak_memory_mib"] for f in firsts] == [100, 101, 102]
    assert [f["bytes_in"] for f in firsts] == [1, 2, 3]
    broken = firsts[1]
    assert broken["exit_code"] == 1 and broken["failure"] == "application"
    assert broken["stderr_tail"] == TOOL_ERROR
    assert whole.body["job"]["array_size"] == 3

    pages, token = [], None
    while True:
        answer = lab.call("GET", f"/jobs/{job_id}/report", query={"limit": "1", **({"next_token": token} if token else {})})
        assert answer.status == 200, answer.body
        pages.append([c["index"] for c in answer.body["children"]])
        token = answer.body["next_token"]
        if token is None:
            break
    assert pages == [[0, 1], [2]]
    # Rows live in two block items, not in 3 reads of the children's own items.
    blocks = {i["job_id"]: i["rows"] for i in lab.ledger_items() if "/report/" in i["job_id"]}
    assert sorted(blocks) == [f"{job_id}/report/0", f"{job_id}/report/1"]
    assert [len(rows) for _, rows in sorted(blocks.items())] == [2, 1]


def test_a_redelivered_childs_event_adds_no_second_row(lab):
    job_id = array_job(lab, SAMPLES)
    events = events_for(job_id)
    for event in events + events:
        lab.deliver(event)
    children = lab.call("GET", f"/jobs/{job_id}/report").body["children"]
    assert [c["index"] for c in children] == [0, 1, 2]
    [block] = [i for i in lab.ledger_items() if i["job_id"] == f"{job_id}/report/0"]
    assert len(block["rows"]) == 3


def test_report_lists_jobs_since_a_moment_of_one_pipeline(lab):
    old = pending_record(lab, "j-0000000000000000000000000c", created_at="2026-10-01T00:00:00.000000Z")
    new = pending_record(lab, "j-0000000000000000000000000d", created_at="2026-11-05T00:00:00.000000Z")
    other = pending_record(lab, "j-0000000000000000000000000e", created_at="2026-11-06T00:00:00.000000Z",
                           pipeline="other")
    answer = lab.call("GET", "/report", query={"since": "2026-11-01", "pipeline": "fastq-stats"})
    assert answer.status == 200, answer.body
    assert [j["job_id"] for j in answer.body["jobs"]] == [new]
    everything = lab.call("GET", "/report", query={"since": "2026-09-01T00:00:00Z"}).body["jobs"]
    assert [j["job_id"] for j in everything] == [old, new, other]


def test_report_refuses_a_missing_or_malformed_since_and_unknown_jobs(lab):
    for query in ({}, {"since": "last tuesday"}):
        answer = lab.call("GET", "/report", query=query)
        assert answer.status == 422 and answer.error["details"]["field"] == "since", answer.body
    assert lab.call("GET", "/jobs/j-00000000000000000000000zzz/report").status == 404
    job_id = array_job(lab, SAMPLES)
    bad = lab.call("GET", f"/jobs/{job_id}/report", query={"limit": "0"})
    assert bad.status == 422 and bad.error["details"]["field"] == "limit"


def test_a_failed_single_job_says_its_exit_code_and_the_tools_last_words_in_status_and_why(lab):
    from labbatch.client.why import why_text
    from test_failures_recovery import final_event, submitted

    job = submitted(lab)
    lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=f"jobs/{job['job_id']}/manifest.json",
                      Body=manifest(job["job_id"], attempt=1, exit_code=1, peak_mib=10, cpu=1.0, sizes_in=[5],
                                    sizes_out=[], message=TOOL_ERROR))
    lab.deliver(final_event(lab, "tool_exit_one", job))

    seen = lab.call("GET", f"/jobs/{job['job_id']}").body
    (attempt,) = seen["attempts"]
    assert attempt["reason"] == "Essential container in task exited"
    assert attempt["exit_code"] == 1 and attempt["stderr_tail"] == TOOL_ERROR
    assert f"  attempt 1: exit 1: {TOOL_ERROR}" in why_text(seen).splitlines()
