"""Every answer of the TES routes, checked against strict models of TES 1.1 (api_tes_spec.py):
service-info, create, get in each view, list in each view, cancel, and the error answers, for
tasks in every state LabBatch reports. Expected values come from what the test sent and the
manifests it wrote, not from the code under test."""

from __future__ import annotations

import json

import pytest

import api_tes_spec as spec
from tests.api_lab import INPUTS_BUCKET, REFERENCE, RESULTS_BUCKET, SETTINGS
from tests.api_tes_lab import BASE, IMAGE, create, fail, move, put_manifest, record_of, task

VIEWS = (None, "MINIMAL", "BASIC", "FULL")
RICH = {
    "name": "rich-task",
    "description": "every field TES 1.1 lets a client send",
    "inputs": [{"name": "ref", "description": "the reference", "url": REFERENCE, "path": "/data/ref.fa",
                "type": "FILE", "streamable": False},
               {"content": "alpha\nbeta\n", "path": "/data/words.txt"},
               {"url": f"s3://{INPUTS_BUCKET}/runs/schema/", "path": "/data/run", "type": "DIRECTORY"}],
    "outputs": [{"name": "index", "description": "the index", "url": f"s3://{RESULTS_BUCKET}/tes/schema/ref.fa.fai",
                 "path": "/data/ref.fa.fai", "type": "FILE"},
                {"url": f"s3://{RESULTS_BUCKET}/tes/schema/logs/", "path": "/data/*.log", "path_prefix": "/data/"},
                {"url": f"s3://{RESULTS_BUCKET}/tes/schema/out/", "path": "/data/out", "type": "DIRECTORY"}],
    "resources": {"cpu_cores": 2, "preemptible": False, "ram_gb": 0.5, "disk_gb": 1.5, "zones": ["us-east-1a"],
                  "backend_parameters": {"VmSize": "m7g.large"}, "backend_parameters_strict": False},
    "executors": [{"image": IMAGE, "command": ["sh", "-c", "exit 2"], "workdir": "/data", "env": {"A": "1"},
                   "ignore_error": True},
                  {"image": IMAGE, "command": ["samtools", "faidx", "/data/ref.fa"], "stdin": "/data/words.txt",
                   "stdout": "/data/faidx.log", "stderr": "/data/faidx.err"}],
    "volumes": ["/vol/shared"],
    "tags": {"project": "schema", "empty": ""},
}
EXECUTOR_LOGS = [
    {"start_time": "2026-11-02T10:06:41.000Z", "end_time": "2026-11-02T10:06:42.000Z", "exit_code": 2,
     "stdout": "first\n"},
    {"start_time": "2026-11-02T10:06:42.000Z", "end_time": "2026-11-02T10:06:45.500Z", "exit_code": 0,
     "stdout": "second\n"},
]
OUTPUT_LOGS = [{"url": f"s3://{RESULTS_BUCKET}/tes/schema/ref.fa.fai", "path": "/data/ref.fa.fai", "size_bytes": 38},
               {"url": f"s3://{RESULTS_BUCKET}/tes/schema/logs/faidx.log", "path": "/data/faidx.log",
                "size_bytes": 0}]


def get(lab, task_id: str, view: str | None):
    answer = lab.call("GET", f"{BASE}/tasks/{task_id}", query={"view": view} if view else None)
    assert answer.status == 200, answer.body
    spec.check_task(answer.body, view)
    return answer.body


def list_all(lab, view: str | None, page_size: int, **query) -> list[dict]:
    """Every page of a listing, each answer checked against the view's model."""
    tasks, token = [], None
    while True:
        params = {**query, "page_size": str(page_size), **({"view": view} if view else {}),
                  **({"page_token": token} if token else {})}
        answer = lab.call("GET", f"{BASE}/tasks", query=params)
        assert answer.status == 200, answer.body
        spec.check_list(answer.body, view)
        tasks += answer.body["tasks"]
        token = answer.body.get("next_page_token")
        if token is None:
            return tasks


@pytest.fixture
def tasks_in_every_state(tes_lab):
    """task ids by the state each is brought to, through the API and recorded Batch events."""
    for key, body in (("runs/schema/a.fq", b"A" * 10), ("runs/schema/lane/b.fq", b"B" * 5)):
        tes_lab.s3.put_object(Bucket=INPUTS_BUCKET, Key=key, Body=body)
    ids = {}
    ids["QUEUED"] = create(tes_lab, {"executors": [{"image": IMAGE, "command": ["true"]}]})
    ids["RUNNING"] = create(tes_lab, task(name="runs"))
    move(tes_lab, ids["RUNNING"], "RUNNING")
    ids["COMPLETE"] = create(tes_lab, RICH)
    put_manifest(tes_lab, ids["COMPLETE"], {"executors": EXECUTOR_LOGS, "outputs": OUTPUT_LOGS})
    move(tes_lab, ids["COMPLETE"], "SUCCEEDED")
    ids["EXECUTOR_ERROR"] = create(tes_lab, task(name="fails"))
    put_manifest(tes_lab, ids["EXECUTOR_ERROR"], {"executors": [{**EXECUTOR_LOGS[0], "exit_code": 1}], "outputs": []},
                 status="failed", error={"code": "tool_failed", "message": "executor 0 'sh' exited with 1"})
    fail(tes_lab, ids["EXECUTOR_ERROR"], "tool_exit_one")
    # On-demand, so no recovery follows (spot_to_on_demand is for spot): it stays SYSTEM_ERROR.
    ids["SYSTEM_ERROR"] = create(tes_lab, task(name="lost"))
    fail(tes_lab, ids["SYSTEM_ERROR"], "spot_reclaimed_every_attempt")
    from labbatch_api.ledger import JobLedger

    ledger = JobLedger(tes_lab.dynamodb, SETTINGS["table"])
    ids["CANCELING"] = create(tes_lab, task(name="stopping"))
    move(tes_lab, ids["CANCELING"], "RUNNING")
    ledger.record_cancel(ids["CANCELING"], {"requested_at": "2026-11-02T10:10:00.000000Z",
                                            "requested_by": "arn:aws:iam::123456789012:user/bob", "action": "terminate"})
    ids["CANCELED"] = create(tes_lab, task(name="stopped"))
    ledger.record_cancel(ids["CANCELED"], {"requested_at": "2026-11-02T10:10:00.000000Z",
                                           "requested_by": "arn:aws:iam::123456789012:user/bob", "action": "terminate"})
    fail(tes_lab, ids["CANCELED"], "terminated_through_the_api")
    return ids


def test_get_and_list_answers_validate_in_every_view_and_state(tes_lab, tasks_in_every_state):
    ids = tasks_in_every_state
    for state, task_id in ids.items():
        for view in VIEWS:
            body = get(tes_lab, task_id, view)
            assert (body["id"], body["state"]) == (task_id, state)

    full = get(tes_lab, ids["COMPLETE"], "FULL")
    (log,) = full["logs"]
    assert log["logs"] == EXECUTOR_LOGS  # in executor order, stdout included
    assert log["outputs"] == [{**o, "size_bytes": str(o["size_bytes"])} for o in OUTPUT_LOGS]
    assert full["inputs"][1]["content"] == "alpha\nbeta\n"
    assert full["resources"] == RICH["resources"] and full["volumes"] == RICH["volumes"]
    assert full["tags"] == RICH["tags"] and full["executors"][0]["ignore_error"] is True
    basic = get(tes_lab, ids["COMPLETE"], "BASIC")
    assert basic["logs"][0]["logs"] == [{k: v for k, v in e.items() if k != "stdout"} for e in EXECUTOR_LOGS]
    assert "content" not in basic["inputs"][1]
    failed = get(tes_lab, ids["EXECUTOR_ERROR"], "FULL")
    assert [e["exit_code"] for e in failed["logs"][0]["logs"]] == [1]
    assert any("executor 0 'sh' exited with 1" in line for line in failed["logs"][0]["system_logs"])
    assert "system_logs" not in get(tes_lab, ids["EXECUTOR_ERROR"], "BASIC")["logs"][0]
    assert get(tes_lab, ids["RUNNING"], "FULL")["logs"][0]["logs"] == []  # started, no manifest yet
    assert "logs" not in get(tes_lab, ids["QUEUED"], "FULL")

    for view in VIEWS:
        listed = list_all(tes_lab, view, page_size=3)
        assert sorted(t["id"] for t in listed) == sorted(ids.values())
        # A listed task is what GET answers for it, logs included.
        for item in listed:
            assert item == get(tes_lab, item["id"], view)


def test_a_task_that_cannot_start_says_why_in_its_system_logs(tes_lab):
    # What an engine shows of a failed task (Snakemake's plugin, nf-ga4gh): Batch's job reason is
    # only "Task failed to start"; the image pull's error must reach the TES answer too.
    task_id = create(tes_lab, task(name="unpullable"))
    fail(tes_lab, task_id, "cannot_pull_container")
    # LabBatch tries a task that failed to start once more (tes.recovery): the failed attempt's log says why.
    log = get(tes_lab, task_id, "FULL")["logs"][0]
    assert any(line.startswith("Batch attempt 1: ") and "CannotPullContainerError: Error response from daemon: pull "
               "access denied" in line for line in log["system_logs"]), log["system_logs"]


def test_a_reclaimed_task_is_recovered_listed_once_and_followed(tes_lab):
    # A task is recovered as a pipeline's job (the lab's tes.recovery): all spot attempts reclaimed
    # -> once more on on-demand, same job definition and task document. GET and the list show the
    # task, where its continuation is, and never the continuation itself.
    from labbatch_contract import runner_env
    from labbatch_contract.ledger import to_item

    task_id = create(tes_lab, task(name="reclaimed", resources={"preemptible": True}))
    answer = fail(tes_lab, task_id, "spot_reclaimed_every_attempt")
    assert answer["recovery"]["kind"] == "spot_to_on_demand" and answer["recovery"]["submitted"]
    old = record_of(tes_lab, task_id)
    new_id = old["recovered_by"]
    new = record_of(tes_lab, new_id)
    assert (new["queue"], new["job_definition"], new["pipeline"]) == ("on-demand", old["job_definition"],
                                                                       old["pipeline"])
    [resubmitted] = tes_lab.batch.describe_jobs(jobs=[new["batch_job_id"]])["jobs"]
    [original] = tes_lab.batch.describe_jobs(jobs=[old["batch_job_id"]])["jobs"]
    env = {e["name"]: e["value"] for e in resubmitted["container"]["environment"]}
    old_env = {e["name"]: e["value"] for e in original["container"]["environment"]}
    assert env[runner_env.TES_TASK] == old_env[runner_env.TES_TASK]
    assert resubmitted["jobQueue"].endswith(SETTINGS["queues"]["on-demand"])
    for view in VIEWS:
        listed = list_all(tes_lab, view, page_size=1)
        assert [t["id"] for t in listed] == [task_id]
        assert listed[0]["state"] == "QUEUED"  # the continuation's, not the reclaimed attempt's
        assert listed[0] == get(tes_lab, task_id, view)
    # One TaskLog per attempt: the reclaimed one says why and where the task went; the
    # continuation has none until it starts.
    (reclaimed,) = get(tes_lab, task_id, "FULL")["logs"]
    assert reclaimed["metadata"] == {"labbatch_job_id": task_id, "batch_job_id": old["batch_job_id"]}
    assert "LabBatch failure class: spot_reclaimed" in reclaimed["system_logs"]
    assert f"LabBatch resubmitted the task (spot_to_on_demand) as {new_id}" in reclaimed["system_logs"]
    assert "system_logs" not in get(tes_lab, task_id, "BASIC")["logs"][0]
    tes_lab.dynamodb.update_item(TableName=SETTINGS["table"], Key={"job_id": {"S": new_id}},
                                 UpdateExpression="SET #s = :s, started_at = :t", ExpressionAttributeNames={"#s": "status"},
                                 ExpressionAttributeValues=to_item({":s": "RUNNING", ":t": "2026-11-02T11:00:00.000000Z"}))
    full = get(tes_lab, task_id, "FULL")
    assert full["name"] == "reclaimed" and full["state"] == "RUNNING"
    assert [log["metadata"]["labbatch_job_id"] for log in full["logs"]] == [task_id, new_id]
    assert full["logs"][1]["start_time"] == "2026-11-02T11:00:00.000000Z"
    assert full["logs"][1]["metadata"]["recovered_from"] == task_id
    assert list_all(tes_lab, "MINIMAL", page_size=5, state="RUNNING") == [{"id": task_id, "state": "RUNNING"}]
    assert list_all(tes_lab, "MINIMAL", page_size=5, state="SYSTEM_ERROR") == []


def test_service_info_create_and_cancel_answers_validate(tes_lab):
    for path in ("/service-info", "/tasks/service-info"):
        answer = tes_lab.call("GET", BASE + path)
        assert answer.status == 200
        info = spec.check(spec.ServiceInfo, answer.body)
        assert info.type.artifact == spec.ServiceArtifact.tes and info.type.group == "org.ga4gh"
    for body in (task(), RICH | {"inputs": RICH["inputs"][:2]}, {"executors": [{"image": IMAGE, "command": ["true"]}]}):
        answer = tes_lab.call("POST", BASE + "/tasks", body)
        assert answer.status == 200, answer.body
        spec.check(spec.CreateTaskResponse, answer.body)
        for _ in range(2):  # a second cancel, of a task already cancelled, answers the same
            cancelled = tes_lab.call("POST", f"{BASE}/tasks/{answer.body['id']}:cancel")
            assert cancelled.status == 200
            spec.check(spec.CancelTaskResponse, cancelled.body)


def test_a_task_still_being_submitted_answers_in_the_spec_and_cancel_says_wait(tes_lab):
    from labbatch_api.ledger import JobLedger

    task_id = "j-0000000000000000000000000q"
    JobLedger(tes_lab.dynamodb, SETTINGS["table"]).create_pending({
        "job_id": task_id, "record_type": "job", "created_at": "2026-11-02T09:59:59.000000Z", "pipeline": "ga4gh:tes",
        "queue": "on-demand", "output_prefix": f"s3://{RESULTS_BUCKET}/jobs/{task_id}/", "status": "PENDING_SUBMIT",
        "progress": 0, "attempts": [], "tes": json.dumps(task())})
    for view in VIEWS:
        assert get(tes_lab, task_id, view)["state"] == "QUEUED"
    answer = tes_lab.call("POST", f"{BASE}/tasks/{task_id}:cancel")
    assert answer.status == 409 and answer.headers.get("Retry-After")
    spec.check_error(answer.status, answer.body)


@pytest.mark.parametrize("method, path, kwargs, status, code, field", [
    ("GET", "/tasks/j-00000000000000000000000000", {}, 404, "no_such_task", "id"),
    ("GET", "/tasks/not-an-id", {"query": {"view": "FULL"}}, 404, "no_such_task", "id"),
    ("GET", "/tasks/\U0001f600", {}, 404, "no_such_task", "id"),
    ("POST", "/tasks/j-00000000000000000000000000:cancel", {}, 404, "no_such_task", "id"),
    ("POST", "/tasks/j-00000000000000000000000000:pause", {}, 404, "no_such_route", "path"),
    ("GET", "/tasks/j-00000000000000000000000000", {"query": {"view": "EVERYTHING"}}, 422, "invalid_view", "view"),
    ("GET", "/tasks", {"query": {"view": "minimal"}}, 422, "invalid_view", "view"),
    ("GET", "/tasks", {"query": {"page_size": "0"}}, 422, "invalid_page_size", "page_size"),
    ("GET", "/tasks", {"query": {"page_size": "ten"}}, 422, "invalid_page_size", "page_size"),
    ("GET", "/tasks", {"query": {"page_token": "not-a-token"}}, 422, "invalid_page_token", "page_token"),
    ("GET", "/tasks", {"query": {"state": "DONE"}}, 422, "invalid_state", "state"),
    ("POST", "/tasks", {"raw_body": "{not json"}, 422, "invalid_task", "body"),
    ("POST", "/tasks", {"body": {"executors": []}}, 422, "invalid_task", "executors"),
    ("POST", "/tasks", {"body": task(resources={"ram_gb": 10**6})}, 422, "memory_too_large", "resources.ram_gb"),
    ("POST", "/tasks", {"body": task(), "caller": None}, 403, "no_caller_identity", "Authorization"),
    ("DELETE", "/tasks", {}, 405, "method_not_allowed", "method"),
    ("GET", "/nowhere", {}, 404, "no_such_route", "path"),
])
def test_error_answers_are_one_shape_naming_the_field(tes_lab, method, path, kwargs, status, code, field):
    answer = tes_lab.call(method, BASE + path, **kwargs)
    assert (answer.status, answer.error["code"]) == (status, code), answer.body
    assert spec.check_error(answer.status, answer.body).error.details.field == field


def test_tes_off_answers_in_the_error_shape(lab):
    for method, path in (("GET", "/service-info"), ("GET", "/tasks"), ("POST", "/tasks"),
                         ("GET", "/tasks/j-00000000000000000000000000")):
        answer = lab.call(method, BASE + path, task() if method == "POST" else None)
        assert (answer.status, answer.error["code"]) == (403, "tes_disabled")
        assert spec.check_error(answer.status, answer.body).error.details.field == "tes.allowed_images"


def test_a_state_tes_defines_but_labbatch_never_reports_filters_to_nothing(tes_lab):
    create(tes_lab, task())
    for state in ("PAUSED", "PREEMPTED", "UNKNOWN"):
        answer = tes_lab.call("GET", BASE + "/tasks", query={"state": state})
        assert answer.status == 200 and answer.body == {"tasks": []}
        spec.check_list(answer.body, None)
