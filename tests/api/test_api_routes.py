"""GET/DELETE /jobs, GET /pipelines, GET /openapi.json, and the error shape of routing."""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse

from tests.api_lab import (
    SETTINGS,
    CALLER,
    READS,
    REFERENCE,
    _RawBody,
    api_clients,
    assert_ledger_agrees_with_batch,
    capture_calls,
    inject,
)

FASTQ = {"pipeline": "fastq-stats", "inputs": [READS]}
ALIGN = {"pipeline": "align", "inputs": [READS], "parameters": {"reference": REFERENCE}}


def describe_answer(batch_job_id: str, status: str) -> AWSResponse:
    body = json.dumps(
        {"jobs": [{"jobId": batch_job_id, "jobName": "x", "jobQueue": "q", "status": status, "jobDefinition": "d"}]}
    ).encode()
    return AWSResponse("https://injected", 200, {"Content-Type": "application/json"}, _RawBody(body))


# --- GET /jobs/{job_id} ------------------------------------------------------------------

def test_get_job_returns_the_record(lab):
    submitted = lab.submit(ALIGN).body

    answer = lab.call("GET", f"/jobs/{submitted['job_id']}")

    assert answer.status == 200
    job = answer.body
    assert job["job_id"] == submitted["job_id"]
    assert job["pipeline"] == "align" and job["queue"] == "spot"
    assert job["status"] == "SUBMITTED"
    assert job["submitted_by"] == CALLER
    assert job["output_prefix"] == submitted["output_prefix"]
    assert job["batch_job_id"] == submitted["batch_job_id"]
    assert job["parameters"] == {"preset": "sr", "reference": REFERENCE}
    assert job["attempts"] == [] and job["children"] is None
    for field in ("status_reason", "created_at", "started_at", "stopped_at", "log"):
        assert field in job
    # Internal bookkeeping stays internal.
    assert "progress" not in job and "record_type" not in job


@pytest.mark.parametrize("job_id", ["j-0000000000000000000000000a", "not-a-job-id", "j-UPPER00000000000000000000"])
def test_unknown_job_is_404(lab, job_id):
    answer = lab.call("GET", f"/jobs/{job_id}")

    assert answer.status == 404
    assert answer.error["code"] == "no_such_job"
    assert answer.error["details"]["field"] == "job_id"


# --- GET /jobs ---------------------------------------------------------------------------

def test_list_is_newest_first_and_pages_with_next_token(lab):
    ids = [lab.submit(FASTQ).body["job_id"] for _ in range(5)]

    pages, token = [], None
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        answer = lab.call("GET", "/jobs", query=query)
        assert answer.status == 200
        pages.append([job["job_id"] for job in answer.body["jobs"]])
        token = answer.body["next_token"]
        if token is None:
            break

    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[0:1]]


def test_list_filters_by_pipeline_and_status(lab):
    fastq = [lab.submit(FASTQ).body["job_id"] for _ in range(3)]
    align = lab.submit(ALIGN).body["job_id"]
    # Mark one fastq job FAILED as the status updater would.
    lab.dynamodb.update_item(
        TableName="labbatch-example-jobs",
        Key={"job_id": {"S": fastq[0]}},
        UpdateExpression="SET #s = :f",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":f": {"S": "FAILED"}},
    )

    by_pipeline = lab.call("GET", "/jobs", query={"pipeline": "align"}).body
    by_status = lab.call("GET", "/jobs", query={"status": "SUBMITTED", "pipeline": "fastq-stats"}).body
    failed = lab.call("GET", "/jobs", query={"status": "FAILED"}).body

    assert [j["job_id"] for j in by_pipeline["jobs"]] == [align]
    assert [j["job_id"] for j in by_status["jobs"]] == [fastq[2], fastq[1]]
    assert [j["job_id"] for j in failed["jobs"]] == [fastq[0]]
    assert by_pipeline["next_token"] is None


def test_list_leaves_out_idempotency_and_child_items(lab):
    lab.submit(FASTQ, headers={"Idempotency-Key": "abc"})

    answer = lab.call("GET", "/jobs")

    assert len(lab.ledger_items()) == 2
    assert len(answer.body["jobs"]) == 1


@pytest.mark.parametrize(
    "query, field",
    [
        ({"next_token": "bm90LW91cnM"}, "next_token"),
        ({"next_token": "%%%"}, "next_token"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "DONE"}, "status"),
    ],
)
def test_list_refuses_bad_query(lab, query, field):
    answer = lab.call("GET", "/jobs", query=query)

    assert answer.status == 422
    assert answer.error["details"]["field"] == field


# --- DELETE /jobs/{job_id} ---------------------------------------------------------------

@pytest.mark.parametrize(
    "live_status, action, operation",
    [("RUNNABLE", "cancel", "CancelJob"), ("SUBMITTED", "cancel", "CancelJob"), ("RUNNING", "terminate", "TerminateJob"), ("STARTING", "terminate", "TerminateJob")],
)
def test_cancel_before_start_terminate_after(lab, live_status, action, operation):
    job = lab.submit(FASTQ).body
    batch = api_clients().batch
    inject(batch, "DescribeJobs", [describe_answer(job["batch_job_id"], live_status)])
    calls = capture_calls(batch, operation)

    answer = lab.call("DELETE", f"/jobs/{job['job_id']}")

    assert answer.status == 202, answer.body
    assert answer.body["cancel"]["action"] == action
    assert answer.body["cancel"]["requested_by"] == CALLER
    assert calls == [{"jobId": job["batch_job_id"], "reason": f"Cancelled through the LabBatch API by {CALLER}"}]
    record = lab.job_records()[0]
    assert record["cancel"]["action"] == action


def test_cancel_finished_job_is_409(lab):
    job = lab.submit(FASTQ).body
    lab.dynamodb.update_item(
        TableName="labbatch-example-jobs",
        Key={"job_id": {"S": job["job_id"]}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SUCCEEDED"}},
    )
    describe = capture_calls(api_clients().batch, "DescribeJobs")

    answer = lab.call("DELETE", f"/jobs/{job['job_id']}")

    assert answer.status == 409
    assert answer.error["code"] == "job_finished"
    assert describe == []  # the ledger already knew


def test_cancel_when_batch_finished_before_the_ledger_heard(lab):
    # moto's Batch finishes jobs at once; the ledger still says SUBMITTED.
    job = lab.submit(FASTQ).body
    cancels = capture_calls(api_clients().batch, "CancelJob")
    terminates = capture_calls(api_clients().batch, "TerminateJob")

    answer = lab.call("DELETE", f"/jobs/{job['job_id']}")

    assert answer.status == 409
    assert answer.error["code"] == "job_finished"
    assert answer.error["details"]["status"] == "SUCCEEDED"
    assert cancels == [] and terminates == []
    assert "cancel" not in lab.job_records()[0]


def test_cancel_before_batch_job_id_is_known(lab):
    from labbatch_api.ledger import JobLedger

    JobLedger(lab.dynamodb, "labbatch-example-jobs").create_pending(
        {
            "job_id": "j-0000000000000000000000000a",
            "record_type": "job",
            "created_at": "2026-11-02T10:11:12.123456Z",
            "status": "PENDING_SUBMIT",
            "progress": 0,
        }
    )

    answer = lab.call("DELETE", "/jobs/j-0000000000000000000000000a")

    assert answer.status == 409
    assert answer.error["code"] == "job_not_submitted_yet"
    assert answer.headers["Retry-After"] == "1"


def test_cancel_unknown_job_is_404(lab):
    answer = lab.call("DELETE", "/jobs/j-0000000000000000000000000a")

    assert answer.status == 404
    assert answer.error["code"] == "no_such_job"


# --- GET /pipelines and /openapi.json ----------------------------------------------------

def test_pipelines_with_defaults_and_limits(lab):
    answer = lab.call("GET", "/pipelines")

    assert answer.status == 200
    pipelines = {p["name"]: p for p in answer.body["pipelines"]}
    assert set(pipelines) == {"align", "fastq-stats"}
    align = pipelines["align"]
    assert align["defaults"] == {"vcpus": 2, "memory_mib": 4096, "timeout_minutes": 120, "disk_factor": 4.0, "queue": "spot",
                                 "gpus": 0}
    assert align["parameters"] == {
        "reference": {"required": True, "default": None},
        "preset": {"required": False, "default": "sr"},
    }
    assert align["limits"] == {**SETTINGS["limits"], "scratch_gib": SETTINGS["scratch_gib"], "max_gpus": 0}
    # One pool, `default`: the lab's own queues and limits.
    [pool] = answer.body["pools"]
    assert (pool["name"], pool["queues"], pool["gpu"]) == ("default", SETTINGS["queues"], False)
    assert align["description"]
    assert "local" not in align  # only local mode says what its `local:` block changed


def test_openapi_document_describes_every_route(lab):
    from labbatch_api import handler as job_api
    answer = lab.call("GET", "/openapi.json")

    assert answer.status == 200
    document = answer.body
    assert document["info"]["title"] == "LabBatch job API"
    assert set(document["paths"]) == {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/children",
                                      "/jobs/{job_id}/children/{child}", "/pipelines", "/lab"}
    assert set(document["paths"]["/jobs"]) == {"get", "post"}
    assert set(document["paths"]["/jobs/{job_id}"]) == {"get", "delete"}
    schemas = document["components"]["schemas"]
    assert {"SubmitJobRequest", "SubmitJobResponse", "JobView", "ErrorBody"} <= set(schemas)
    post_params = {p["name"] for p in document["paths"]["/jobs"]["post"].get("parameters", [])}
    assert "idempotency-key" in {p.lower() for p in post_params}
    # A 405 names exactly the methods the resolver's own routes answer on that path.
    documented: dict[str, set[str]] = {path: {m.upper() for m in ops} for path, ops in document["paths"].items()}
    documented["/openapi.json"] = {"GET"}
    # Token management (token_routes.py) stays out of the document, like TES: not for scripts.
    documented["/tokens"] = {"GET", "POST"}
    documented["/tokens/{token_id}"] = {"DELETE"}
    for path, methods in documented.items():
        concrete = (path.replace("{job_id}", "j-0000000000000000000000000a").replace("{child}", "sample-1")
                    .replace("{token_id}", "0123456789abcdef"))
        assert set(job_api._allowed_methods(concrete)) == methods, path


# --- routing errors ----------------------------------------------------------------------

def test_unknown_route_is_404_in_the_error_shape(lab):
    answer = lab.call("GET", "/nowhere")

    assert answer.status == 404
    assert answer.error["code"] == "no_such_route"
    assert set(answer.error) == {"code", "message", "details"}


@pytest.mark.parametrize("method, path, allowed", [("PUT", "/jobs", "GET, POST"), ("POST", "/jobs/j-0000000000000000000000000a", "DELETE, GET"), ("DELETE", "/pipelines", "GET")])
def test_wrong_method_is_405(lab, method, path, allowed):
    answer = lab.call(method, path, {} if method != "DELETE" else None)

    assert answer.status == 405
    assert answer.error["code"] == "method_not_allowed"
    assert answer.headers["Allow"] == allowed
    lab.assert_nothing_created()


def test_request_without_iam_identity_is_refused(lab):
    answer = lab.submit(FASTQ, caller=None)

    assert answer.status == 403
    assert answer.error["code"] == "no_caller_identity"
    lab.assert_nothing_created()


def test_ledger_agrees_with_batch_after_a_mixed_session(lab):
    lab.submit(FASTQ)
    lab.submit({**ALIGN, "inputs": [], "samples": [{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS]}]})
    lab.submit({**FASTQ, "vcpus": 64})  # refused

    assert len(lab.job_records()) == 2
    assert_ledger_agrees_with_batch(lab)


def test_openapi_document_lists_the_refusals_a_submission_can_get(lab):
    post = lab.call("GET", "/openapi.json").body["paths"]["/jobs"]["post"]["responses"]
    assert {"202", "403", "409", "413", "415", "422", "503"} <= set(post)
    assert post["415"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
