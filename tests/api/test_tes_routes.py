"""The TES 1.1 routes of the job API against moto: off by default, images and paths refused with
the setting or field named, one task = one ledger record + one Batch job of the usual shape, and
answers holding only the fields the specification defines."""

from __future__ import annotations

import json

import pytest

from tests.api_lab import INPUTS_BUCKET, ON_DEMAND_QUEUE, RESULTS_BUCKET, SETTINGS, SPOT_QUEUE, READS
from tests.api_tes_lab import BASE, IMAGE, task

from labbatch_contract import names, runner_env
from labbatch_contract.tes import TES_PIPELINE, task_state

# Every key TES 1.1 defines on a task (tesTask) and its parts: anything else breaks py-tes.
TASK_KEYS = {"id", "state", "name", "description", "inputs", "outputs", "resources", "executors", "volumes",
             "tags", "logs", "creation_time"}


def test_tes_is_off_without_allowed_images(lab):
    for method, path in (("GET", "/service-info"), ("POST", "/tasks"), ("GET", "/tasks")):
        answer = lab.call(method, BASE + path, task() if method == "POST" else None)
        assert answer.status == 403
        assert answer.error["code"] == "tes_disabled"
        assert "tes.allowed_images" in answer.error["message"]


def test_service_info_names_the_buckets(tes_lab):
    answer = tes_lab.call("GET", BASE + "/service-info")
    assert answer.status == 200
    assert answer.body["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert f"s3://{RESULTS_BUCKET}/tes/" in answer.body["storage"]
    assert set(answer.body) <= {"id", "name", "type", "description", "organization", "contactUrl",
                                "documentationUrl", "createdAt", "updatedAt", "environment", "version", "storage"}


def test_create_answers_only_the_id_and_submits_one_job_of_the_usual_shape(tes_lab):
    answer = tes_lab.call("POST", BASE + "/tasks", task())
    assert answer.status == 200, answer.body
    assert list(answer.body) == ["id"]
    task_id = answer.body["id"]
    (record,) = tes_lab.job_records()
    assert record["job_id"] == task_id and record["pipeline"] == TES_PIPELINE
    assert json.loads(record["tes"])["executors"][0]["image"] == IMAGE
    (job,) = tes_lab.batch_jobs()
    assert job["jobQueue"].endswith(ON_DEMAND_QUEUE)  # not preemptible
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    # A `content` input may hold secrets: the runner's document is in S3, not in the job's
    # environment (DescribeJobs shows it), and the ledger's copy has no content.
    assert env[runner_env.TES_TASK] == f"s3://{INPUTS_BUCKET}/work/tes/{task_id}.json"
    runner_task = json.loads(tes_lab.s3.get_object(Bucket=INPUTS_BUCKET, Key=f"work/tes/{task_id}.json")["Body"].read())
    assert runner_task["inputs"][1] == {"path": "/data/note.txt", "content": "hello\n", "type": "FILE"}
    assert "hello" not in json.dumps(job) and "hello" not in json.dumps(record)
    full = tes_lab.call("GET", f"{BASE}/tasks/{task_id}", query={"view": "FULL"}).body
    basic = tes_lab.call("GET", f"{BASE}/tasks/{task_id}", query={"view": "BASIC"}).body
    assert full["inputs"][1] == {"path": "/data/note.txt", "content": "hello\n", "type": "FILE"}
    assert "content" not in basic["inputs"][1] and "hello" not in json.dumps(basic)
    # Another member of the lab sees the task, never its content (its submitter's secrets).
    other = "arn:aws:sts::123456789012:assumed-role/LabScientist/mallory"
    theirs = tes_lab.call("GET", f"{BASE}/tasks/{task_id}", query={"view": "FULL"}, caller=other).body
    listed = tes_lab.call("GET", f"{BASE}/tasks", query={"view": "FULL"}, caller=other).body["tasks"]
    assert theirs["id"] == task_id and "hello" not in json.dumps(theirs) + json.dumps(listed)
    mine = tes_lab.call("GET", f"{BASE}/tasks", query={"view": "FULL"}).body["tasks"]
    assert {"path": "/data/note.txt", "content": "hello\n", "type": "FILE"} in mine[-1]["inputs"]
    assert runner_task["executors"][0]["command"] == ["samtools", "faidx", "/data/ref.fa"]
    assert env[runner_env.OUTPUT_PREFIX] == names.output_prefix(RESULTS_BUCKET, task_id)
    definition = tes_lab.batch.describe_job_definitions(jobDefinitionName=record["job_definition"])["jobDefinitions"]
    assert definition[0]["containerProperties"]["image"] == IMAGE
    assert record["job_definition"].startswith("labbatch-example_tes-")
    # The same image again reuses the definition.
    second = tes_lab.call("POST", BASE + "/tasks", task(resources={"preemptible": True}))
    assert second.status == 200
    records = {r["job_id"]: r for r in tes_lab.job_records()}
    assert records[second.body["id"]]["job_definition"] == record["job_definition"]
    assert records[second.body["id"]]["job_queue"] == SPOT_QUEUE
    assert len(tes_lab.batch.describe_job_definitions(jobDefinitionName=record["job_definition"])["jobDefinitions"]) == 1


@pytest.mark.parametrize("body, code, field", [
    (task(executors=[{"image": "docker.io/evil/miner:1", "command": ["x"]}]), "image_not_allowed", "executors[0].image"),
    (task(executors=[{"image": IMAGE, "command": ["a"]}, {"image": "labbatch-bwa:local", "command": ["b"]}]),
     "executors_images_differ", "executors"),
    (task(inputs=[{"url": "s3://somebody-else/x", "path": "/in/x"}]), "input_outside_lab", "inputs[0].url"),
    (task(inputs=[{"content": "x", "path": "relative/x"}]), "path_not_absolute", "inputs[0].path"),
    (task(outputs=[{"url": f"s3://{RESULTS_BUCKET}/jobs/x", "path": "/o"}]), "output_outside_lab", "outputs[0].url"),
    (task(outputs=[{"url": f"s3://{RESULTS_BUCKET}/tes/x/", "path": "/o/*.txt"}]), "path_prefix_missing",
     "outputs[0].path_prefix"),
    (task(resources={"cpu_cores": 4096}), "vcpus_too_many", "resources.cpu_cores"),
    (task(resources={"ram_gb": 100000}), "memory_too_large", "resources.ram_gb"),
    (task(resources={"disk_gb": 1000000}), "scratch_too_small", "resources.disk_gb"),
    (task(executors=[]), "invalid_task", "executors"),
])
def test_refusals_name_what_to_change(tes_lab, body, code, field):
    answer = tes_lab.call("POST", BASE + "/tasks", body)
    assert answer.status == 422, answer.body
    assert answer.error["code"] == code
    assert answer.error["details"]["field"] == field
    tes_lab.assert_nothing_created()


def test_a_directory_input_is_sized_by_its_objects_and_staged_as_a_folder(tes_lab):
    from tests.api_lab import INPUTS_BUCKET

    for key, body in (("runs/r7/a.fq", b"A" * 10), ("runs/r7/lane2/b.fq", b"B" * 20), ("runs/r7/", b""),
                      ("runs/r70/not-this.fq", b"C")):
        tes_lab.s3.put_object(Bucket=INPUTS_BUCKET, Key=key, Body=body)
    answer = tes_lab.call("POST", BASE + "/tasks", task(inputs=[
        {"url": f"s3://{INPUTS_BUCKET}/runs/r7", "path": "/data/run", "type": "DIRECTORY"}]))
    assert answer.status == 200, answer.body
    (job,) = tes_lab.batch_jobs()
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    # The runner gets the folder itself (as a pipeline's folder parameter), never a copy of a listing.
    assert json.loads(env[runner_env.TES_TASK])["inputs"] == [
        {"path": "/data/run", "url": f"s3://{INPUTS_BUCKET}/runs/r7/", "type": "DIRECTORY"}]
    (record,) = tes_lab.job_records()
    assert record["input_bytes"] == 30
    # The task itself keeps what the client sent.
    assert json.loads(record["tes"])["inputs"][0]["type"] == "DIRECTORY"


@pytest.mark.parametrize("inputs, code", [
    ([{"url": "s3://{inputs}/nothing-here/", "path": "/data/run", "type": "DIRECTORY"}], "input_not_found"),
    ([{"content": "x", "path": "/data/run", "type": "DIRECTORY"}], "invalid_input"),
    ([{"url": "s3://{inputs}/", "path": "/data/run", "type": "DIRECTORY"}], "invalid_s3_uri"),
    ([{"url": "s3://somebody-else/run/", "path": "/data/run", "type": "DIRECTORY"}], "input_outside_lab"),
])
def test_bad_directory_inputs_are_refused_naming_the_field(tes_lab, inputs, code):
    from tests.api_lab import INPUTS_BUCKET

    inputs = [{**i, **({"url": i["url"].format(inputs=INPUTS_BUCKET)} if "url" in i else {})} for i in inputs]
    answer = tes_lab.call("POST", BASE + "/tasks", task(inputs=inputs))
    assert answer.status == 422, answer.body
    assert answer.error["code"] == code and answer.error["details"]["field"].startswith("inputs[0]")
    tes_lab.assert_nothing_created()


def test_views_list_filters_and_cancel(tes_lab):
    first = tes_lab.call("POST", BASE + "/tasks", task()).body["id"]
    second = tes_lab.call("POST", BASE + "/tasks", task(name="other", tags={"project": "yeast"})).body["id"]
    minimal = tes_lab.call("GET", f"{BASE}/tasks/{first}").body
    assert minimal == {"id": first, "state": "QUEUED"}
    basic = tes_lab.call("GET", f"{BASE}/tasks/{first}", query={"view": "BASIC"}).body
    assert set(basic) <= TASK_KEYS
    assert "content" not in basic["inputs"][1]
    full = tes_lab.call("GET", f"{BASE}/tasks/{first}", query={"view": "FULL"}).body
    assert full["inputs"][1]["content"] == "hello\n"
    listed = tes_lab.call("GET", BASE + "/tasks", query={"name_prefix": "faidx"}).body
    assert listed["tasks"] == [{"id": first, "state": "QUEUED"}]
    tagged = tes_lab.call("GET", BASE + "/tasks", query={"tag_key": "project", "tag_value": "yeast"}).body
    assert [t["id"] for t in tagged["tasks"]] == [second]
    assert tes_lab.call("GET", f"{BASE}/tasks/j-00000000000000000000000000").status == 404
    # Jobs submitted through POST /jobs are not tasks.
    tes_lab.submit({"pipeline": "fastq-stats", "inputs": [READS]})
    assert len(tes_lab.call("GET", BASE + "/tasks", query={"view": "BASIC"}).body["tasks"]) == 2
    cancelled = tes_lab.call("POST", f"{BASE}/tasks/{first}:cancel")
    assert cancelled.status == 200 and cancelled.body == {}
    # moto ends its jobs at once, so whether the ledger saw the cancel depends on its timing;
    # CANCELING/CANCELED themselves are the state rules' (below) and the container test's.
    assert tes_lab.call("GET", f"{BASE}/tasks/{first}").body["state"] in ("QUEUED", "CANCELING")
    assert tes_lab.call("POST", f"{BASE}/tasks/{first}:pause").status == 404


@pytest.mark.parametrize("record, state", [
    ({"status": "PENDING_SUBMIT"}, "QUEUED"), ({"status": "RUNNABLE"}, "QUEUED"),
    ({"status": "STARTING"}, "INITIALIZING"), ({"status": "RUNNING"}, "RUNNING"),
    ({"status": "SUCCEEDED"}, "COMPLETE"),
    ({"status": "FAILED", "failure": "application"}, "EXECUTOR_ERROR"),
    ({"status": "FAILED", "failure": "out_of_memory"}, "SYSTEM_ERROR"),
    ({"status": "FAILED", "failure": "spot_reclaimed"}, "SYSTEM_ERROR"),
    ({"status": "FAILED", "failure": "infrastructure"}, "SYSTEM_ERROR"),
    ({"status": "FAILED", "failure": "cancelled"}, "CANCELED"),
    ({"status": "RUNNING", "cancel": {"action": "terminate"}}, "CANCELING"),
    ({"status": "FAILED", "failure": "timeout", "cancel": {"action": "terminate"}}, "CANCELED"),
])
def test_state_rules(record, state):
    assert task_state(record) == state


# --- listing: filters and pages ------------------------------------------------------------------

def walk(lab, page_size: int, **query) -> list[list[dict]]:
    """Every page of GET tasks with these filters, following next_page_token."""
    pages, token = [], None
    while True:
        params = {**query, "page_size": str(page_size), **({"page_token": token} if token else {})}
        answer = lab.call("GET", BASE + "/tasks", query=params)
        assert answer.status == 200, answer.body
        pages.append(answer.body["tasks"])
        token = answer.body.get("next_page_token")
        if token is None:
            return pages
        assert len(pages) < 50, "the pages never end"


def test_filtered_pages_are_full_while_more_match_and_walk_every_task_once(tes_lab):
    from tests.api_tes_lab import create, move

    made = []  # (id, name, tags, state), oldest first
    for i in range(14):
        name = ("align-" if i % 3 else "qc-") + str(i)
        tags = {"run": "r1" if i % 2 else "r2", **({"flag": ""} if i % 4 == 0 else {})}
        task_id = create(tes_lab, task(name=name, tags=tags))
        state = "QUEUED"
        if i % 5 == 1:
            move(tes_lab, task_id, "RUNNING")
            state = "RUNNING"
        made.append((task_id, name, tags, state))
    tes_lab.submit({"pipeline": "fastq-stats", "inputs": [READS]})  # a job, not a task: never listed
    newest_first = list(reversed(made))
    cases = [
        ({}, lambda n, t, s: True),
        ({"name_prefix": "align-"}, lambda n, t, s: n.startswith("align-")),
        ({"name_prefix": "qc-1"}, lambda n, t, s: n.startswith("qc-1")),
        ({"state": "RUNNING"}, lambda n, t, s: s == "RUNNING"),
        ({"state": "COMPLETE"}, lambda n, t, s: False),
        ({"tag_key": "run", "tag_value": "r1"}, lambda n, t, s: t["run"] == "r1"),
        ({"tag_key": "flag"}, lambda n, t, s: "flag" in t),  # no value: any value, "" included
        ({"tag_key": "flag", "tag_value": ""}, lambda n, t, s: "flag" in t),
        ({"name_prefix": "align-", "tag_key": "run", "tag_value": "r2", "state": "QUEUED"},
         lambda n, t, s: n.startswith("align-") and t["run"] == "r2" and s == "QUEUED"),
    ]
    for query, wanted in cases:
        expected = [task_id for task_id, n, t, s in newest_first if wanted(n, t, s)]
        for page_size in (1, 2, 5, 100):
            pages = walk(tes_lab, page_size, **query)
            ids = [item["id"] for page in pages for item in page]
            assert ids == expected, (query, page_size)  # newest first, each once, none missing
            # Every page but the last is full; the last is not empty unless nothing matches at all.
            assert all(len(page) == page_size for page in pages[:-1]), (query, page_size)
            assert pages[-1] or not expected, (query, page_size)


def test_a_page_is_short_only_when_its_read_budget_ran_out_and_the_walk_stays_whole(tes_lab, monkeypatch):
    from labbatch_api import ledger
    from tests.api_tes_lab import create

    ids = [create(tes_lab, task(name="keep" if i % 4 == 0 else "skip")) for i in range(12)]
    expected = [task_id for i, task_id in reversed(list(enumerate(ids))) if i % 4 == 0]
    monkeypatch.setattr(ledger, "MAX_QUERIES_PER_FILTERED_PAGE", 1)
    # The ledger filters on name itself; tags it cannot, so every record is read and most dropped.
    for i, task_id in enumerate(ids):
        tags = {"keep": "yes"} if i % 4 == 0 else {}
        document = json.loads(next(r for r in tes_lab.job_records() if r["job_id"] == task_id)["tes"])
        tes_lab.dynamodb.update_item(
            TableName=SETTINGS["table"], Key={"job_id": {"S": task_id}}, UpdateExpression="SET tes = :t",
            ExpressionAttributeValues={":t": {"S": json.dumps({**document, "tags": tags})}})
    pages = walk(tes_lab, 2, tag_key="keep")
    assert [item["id"] for page in pages for item in page] == expected
    assert any(len(page) < 2 for page in pages[:-1])  # one index page of 3 records at a time


def test_the_labs_own_url_plus_v1_is_the_same_tes_endpoint(tes_lab):
    """py-tes 0.4 (Snakemake's and Toil's plugins) and nf-ga4gh append /v1/tasks to the URL they
    are given: given the lab's own URL, /v1/... answers as /ga4gh/tes/v1/..."""
    created = tes_lab.call("POST", "/v1/tasks", task(name="short-url"))
    assert created.status == 200 and list(created.body) == ["id"]
    task_id = created.body["id"]
    for view in ("MINIMAL", "BASIC", "FULL"):
        short = tes_lab.call("GET", f"/v1/tasks/{task_id}", query={"view": view})
        assert short.status == 200 and short.body == tes_lab.call("GET", f"{BASE}/tasks/{task_id}",
                                                                   query={"view": view}).body
    assert tes_lab.call("GET", "/v1/tasks").body == tes_lab.call("GET", f"{BASE}/tasks").body
    assert tes_lab.call("GET", "/v1/tasks/service-info").body == tes_lab.call("GET", f"{BASE}/service-info").body
    cancelled = tes_lab.call("POST", f"/v1/tasks/{task_id}:cancel")
    assert cancelled.status == 200 and cancelled.body == {}  # (moto ends jobs at once: see above)
    assert tes_lab.call("POST", f"/v1/tasks/{task_id}:pause").status == 404
    assert tes_lab.call("GET", "/v1/jobs").status == 404  # only TES lives there


def test_get_lab_says_whether_tes_is_on_and_where(tes_lab):
    view = tes_lab.call("GET", "/lab").body
    assert view["tes"] == {"base_path": BASE, "allowed_images": ["quay.io/biocontainers/", "labbatch-bwa:"]}


def test_get_lab_says_tes_is_off(lab):
    assert lab.call("GET", "/lab").body["tes"] is None
