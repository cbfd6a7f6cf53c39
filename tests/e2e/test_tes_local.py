"""GA4GH TES through the real client: py-tes against `labbatch local` (tasks in real containers of
labbatch-bwa:local, which has no Python) and `labbatch tes-proxy` re-signing every request.

Needs a container engine holding labbatch-runner:local and labbatch-bwa:local (`make images`):
skips without, fails under CI=true (require_engine_and_images). Every answer checked is computed
here from the data the test wrote.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
import tes
import yaml
from tes.utils import unmarshal

from labbatch_contract import names, tokens

from labbatch_contract.tes import tes_api_path as api_path

from tests.e2e.conftest import LABBATCH, ROOT, start_local
from tests.e2e.test_local_containers import BWA_TAG, require_engine_and_images

FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def tes_labs_dir(tmp_path: Path) -> Path:
    labs = tmp_path / "tes-labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["tes"] = {"allowed_images": ["labbatch-bwa:"]}
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return labs


@pytest.fixture(scope="module")
def tes_lab(tmp_path_factory):
    require_engine_and_images(BWA_TAG)
    tmp = tmp_path_factory.mktemp("tes")
    lab = start_local(tmp, labs_dir=tes_labs_dir(tmp), containers=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(lab.home)}
    proxy = subprocess.Popen([LABBATCH, "tes-proxy", "--lab", "example", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    lab.tes_url = json.loads(proxy.stdout.readline())["tes_url"]
    yield lab
    proxy.terminate()
    proxy.wait(timeout=10)
    assert lab.stop() == 0


def client(lab) -> tes.HTTPClient:
    # Snakemake's way in: no credentials, so py-tes sends Basic None:None; the proxy drops it.
    return tes.HTTPClient(lab.tes_url, user="None", password="None", timeout=30)


def wait(cli: tes.HTTPClient, task_id: str, timeout: float = 120) -> tes.Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = cli.get_task(task_id, view="MINIMAL")
        assert task.state not in ("PREEMPTED", "PAUSED", "UNKNOWN")
        if task.state in FINAL:
            return cli.get_task(task_id, view="FULL")
        time.sleep(0.3)
    raise AssertionError(f"{task_id} still {task.state} after {timeout} s")


def test_py_tes_task_end_to_end(tes_lab):
    rng = random.Random(18)
    fasta = "".join(f">chr{i}\n" + "".join(rng.choice("ACGT") for _ in range(rng.randint(50, 400))) + "\n"
                    for i in range(7))
    reference = tes_lab.put("inputs", "tes/ref.fa", fasta.encode())
    results = tes_lab.info["buckets"]["results"]
    cli = client(tes_lab)
    info = cli.get_service_info()
    assert f"s3://{results}/tes/" in info.storage
    task = tes.Task(
        name="tes-count",
        inputs=[tes.Input(url=reference, path="/in/ref.fa"),
                tes.Input(content="alpha\nbeta\ngamma\n", path="/in/words.txt")],
        outputs=[tes.Output(url=f"s3://{results}/tes/e2e/counts.txt", path="/out/counts.txt"),
                 tes.Output(url=f"s3://{results}/tes/e2e/index/", path="/in/ref.fa.*", path_prefix="/in/")],
        executors=[tes.Executor(image=BWA_TAG, command=["samtools", "faidx", "/in/ref.fa"], workdir="/in"),
                   tes.Executor(image=BWA_TAG, command=["sh", "-c", "wc -l < /in/words.txt; grep -c '>' /in/ref.fa"],
                                stdout="/out/counts.txt")],
        resources=tes.Resources(cpu_cores=1, ram_gb=0.5),
        tags={"suite": "e2e"})
    task_id = cli.create_task(task)
    done = wait(cli, task_id)
    assert done.state == "COMPLETE", done.logs
    s3 = tes_lab.s3()
    counts = s3.get_object(Bucket=results, Key="tes/e2e/counts.txt")["Body"].read().decode().split()
    assert counts == ["3", "7"]
    fai = s3.get_object(Bucket=results, Key="tes/e2e/index/ref.fa.fai")["Body"].read().decode()
    records = [block.split("\n", 1) for block in fasta.split(">")[1:]]
    assert [line.split("\t")[:2] for line in fai.splitlines()] == [[name, str(len(seq.strip()))] for name, seq in records]
    (log,) = done.logs
    assert [e.exit_code for e in log.logs] == [0, 0]
    assert {o.url: o.size_bytes for o in log.outputs}[f"s3://{results}/tes/e2e/counts.txt"] == len("3\n7\n")

    # Lists: name_prefix, views (MINIMAL is id and state only).
    listed = cli.list_tasks(view="MINIMAL")
    assert any(t.id == task_id and t.state == "COMPLETE" and t.executors is None for t in listed.tasks)
    named = requests.get(f"{tes_lab.tes_url}/ga4gh/tes/v1/tasks", params={"name_prefix": "tes-c", "view": "BASIC"},
                         timeout=30).json()
    assert [t["id"] for t in named["tasks"]] == [task_id]
    assert named["tasks"][0]["executors"][0]["image"] == BWA_TAG
    assert "content" not in named["tasks"][0]["inputs"][1]


def test_a_directory_input_is_staged_whole_at_its_path(tes_lab):
    files = {"a.txt": "one\ntwo\n", "lane2/b.txt": "three\n", "lane2/deeper/c.txt": "four\nfive\nsix\n"}
    for relative, text in files.items():
        tes_lab.put("inputs", f"tes/dir-run/{relative}", text.encode())
    results = tes_lab.info["buckets"]["results"]
    cli = client(tes_lab)
    task_id = cli.create_task(tes.Task(
        name="tes-directory",
        inputs=[tes.Input(url=f"s3://{tes_lab.info['buckets']['inputs']}/tes/dir-run/", path="/in/run",
                          type="DIRECTORY")],
        outputs=[tes.Output(url=f"s3://{results}/tes/e2e-dir/listing.txt", path="/out/listing.txt")],
        executors=[tes.Executor(image=BWA_TAG, command=["sh", "-c", "cd /in/run && find . -type f -o -type l | sort "
                                                        "| while read f; do echo \"$f $(wc -l < $f)\"; done"],
                                stdout="/out/listing.txt")]))
    done = wait(cli, task_id)
    assert done.state == "COMPLETE", done.logs
    listing = tes_lab.s3().get_object(Bucket=results, Key="tes/e2e-dir/listing.txt")["Body"].read().decode()
    assert listing.splitlines() == [f"./{relative} {text.count(chr(10))}" for relative, text in sorted(files.items())]


def test_executor_error_keeps_its_exit_code(tes_lab):
    cli = client(tes_lab)
    task_id = cli.create_task(tes.Task(name="tes-fails", executors=[
        tes.Executor(image=BWA_TAG, command=["sh", "-c", "echo about to fail; exit 3"])]))
    done = wait(cli, task_id)
    assert done.state == "EXECUTOR_ERROR"
    assert [e.exit_code for e in done.logs[0].logs] == [3]
    assert "about to fail" in done.logs[0].logs[0].stdout
    # A task is a job to the scientist's tools: `labbatch list` and `labbatch why` show it.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(tes_lab.home)}
    why = subprocess.run([LABBATCH, "why", task_id], env=env, capture_output=True, text=True, timeout=60)
    assert why.returncode == 0 and f"{task_id} FAILED (application)" in why.stdout, why.stdout + why.stderr
    assert "last: exit 3" in why.stdout
    listed = subprocess.run([LABBATCH, "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert any(j["job_id"] == task_id and j["pipeline"] == "ga4gh:tes" and j["name"] == "tes-fails"
               for j in json.loads(listed.stdout)["jobs"]), listed.stdout


def test_disallowed_image_is_refused_and_cancel_works(tes_lab):
    cli = client(tes_lab)
    with pytest.raises(requests.HTTPError) as refused:
        cli.create_task(tes.Task(executors=[tes.Executor(image="docker.io/library/alpine:3", command=["true"])]))
    assert refused.value.response.status_code == 422
    assert "tes.allowed_images" in refused.value.response.json()["error"]["message"]
    task_id = cli.create_task(tes.Task(name="tes-sleeps", executors=[tes.Executor(image=BWA_TAG,
                                                                                  command=["sleep", "600"])]))
    deadline = time.monotonic() + 60
    while cli.get_task(task_id).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.3)
    cli.cancel_task(task_id)
    assert cli.get_task(task_id).state in ("CANCELING", "CANCELED")
    assert wait(cli, task_id).state == "CANCELED"


# --- executors in order, views, lists -------------------------------------------------------------

def _text(lab, uri: str) -> str:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return lab.s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def _keys(lab, bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in lab.s3().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def _list(lab, **params) -> tes.ListTasksResponse:
    """GET tasks with the filters py-tes 1.1.4's list_tasks cannot send, read by py-tes's own models."""
    answer = requests.get(f"{lab.tes_url}/ga4gh/tes/v1/tasks", params=params, timeout=30)
    answer.raise_for_status()
    return unmarshal(answer.json(), tes.ListTasksResponse)


def _wait_all(lab, name_prefix: str, count: int, timeout: float = 180) -> None:
    """Until the `count` tasks named so are all final: one list call a round, not one GET per task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = _list(lab, name_prefix=name_prefix, view="MINIMAL", page_size=100).tasks or []
        assert len(tasks) == count and not {t.state for t in tasks} & {"PREEMPTED", "PAUSED", "UNKNOWN"}
        if all(t.state in FINAL for t in tasks):
            return
        time.sleep(0.5)
    raise AssertionError(f"tasks {name_prefix}* not all final after {timeout} s")


@pytest.fixture(scope="module")
def executor_tasks(tes_lab):
    """Two three-executor tasks, run together: in one the middle executor fails with ignore_error,
    in the other it fails without it. Each executor leaves a file under /out (wildcard output)
    and a line in the runner's tool log."""
    run = uuid.uuid4().hex[:8]
    results = tes_lab.info["buckets"]["results"]
    cli = client(tes_lab)

    def make(kind: str, ignore: bool) -> str:
        return cli.create_task(tes.Task(
            name=f"tes-exec-{run}-{kind}", description=f"middle executor fails, ignore_error={ignore}",
            inputs=[tes.Input(content="payload\n", path="/in/payload.txt")],
            outputs=[tes.Output(url=f"s3://{results}/tes/e2e-exec-{run}/{kind}/", path="/out/*.txt",
                                path_prefix="/out/")],
            executors=[
                tes.Executor(image=BWA_TAG, command=["sh", "-c", "mkdir -p /out; echo one > /out/1.txt; "
                                                                 "echo first ran"]),
                tes.Executor(image=BWA_TAG, command=["sh", "-c", "echo two > /out/2.txt; echo second fails; exit 5"],
                             ignore_error=ignore),
                tes.Executor(image=BWA_TAG, command=["sh", "-c", "cat /in/payload.txt > /out/3.txt; echo third ran"]),
            ],
            tags={"suite": "e2e-exec", "run": run}))

    ids = {"ignored": make("ignored", True), "stops": make("stops", False)}
    _wait_all(tes_lab, f"tes-exec-{run}-", 2)
    return {"run": run, "results": results, "ids": ids}


def test_a_failure_with_ignore_error_lets_the_later_executors_run(tes_lab, executor_tasks):
    run, results = executor_tasks["run"], executor_tasks["results"]
    done = client(tes_lab).get_task(executor_tasks["ids"]["ignored"], view="FULL")
    assert done.state == "COMPLETE", done.logs
    (log,) = done.logs
    assert [e.exit_code for e in log.logs] == [0, 5, 0]
    assert ["first ran", "second fails", "third ran"] == [e.stdout.strip() for e in log.logs]
    assert all(a.end_time <= b.start_time for a, b in zip(log.logs, log.logs[1:]))  # one after another
    prefix = f"tes/e2e-exec-{run}/ignored/"
    assert _keys(tes_lab, results, prefix) == [prefix + name for name in ("1.txt", "2.txt", "3.txt")]
    assert [_text(tes_lab, f"s3://{results}/{prefix}{n}.txt") for n in (1, 2, 3)] == ["one\n", "two\n", "payload\n"]
    assert sorted(o.url for o in log.outputs) == [f"s3://{results}/{prefix}{n}.txt" for n in (1, 2, 3)]


def test_a_failure_without_ignore_error_stops_the_later_executors(tes_lab, executor_tasks):
    run, results = executor_tasks["run"], executor_tasks["results"]
    done = client(tes_lab).get_task(executor_tasks["ids"]["stops"], view="FULL")
    assert done.state == "EXECUTOR_ERROR", done.logs
    (log,) = done.logs
    assert [e.exit_code for e in log.logs] == [0, 5]  # the third never started
    # What the attempt itself left (the runner's tool log, every executor's output in turn):
    # the third executor's line is not in it. A failed task uploads no outputs at all.
    tool_log = _text(tes_lab, f"s3://{results}/jobs/{log.metadata['labbatch_job_id']}/logs/tool.log")
    assert "first ran" in tool_log and "second fails" in tool_log and "third ran" not in tool_log
    assert _keys(tes_lab, results, f"tes/e2e-exec-{run}/stops/") == []
    assert log.outputs == []


def test_get_task_in_every_view(tes_lab, executor_tasks):
    cli = client(tes_lab)
    task_id = executor_tasks["ids"]["ignored"]
    minimal = cli.get_task(task_id, view="MINIMAL")
    assert (minimal.id, minimal.state) == (task_id, "COMPLETE")
    assert {k for k, v in minimal.as_dict().items() if v is not None} == {"id", "state"}
    raw = requests.get(f"{tes_lab.tes_url}/ga4gh/tes/v1/tasks/{task_id}", params={"view": "MINIMAL"}, timeout=30)
    assert raw.json() == {"id": task_id, "state": "COMPLETE"}

    basic = cli.get_task(task_id, view="BASIC")
    assert basic.name == f"tes-exec-{executor_tasks['run']}-ignored" and len(basic.executors) == 3
    assert basic.executors[1].ignore_error is True and basic.tags["run"] == executor_tasks["run"]
    assert basic.inputs[0].path == "/in/payload.txt" and basic.inputs[0].content is None
    (log,) = basic.logs
    assert [e.exit_code for e in log.logs] == [0, 5, 0]
    assert all(e.stdout is None and e.stderr is None for e in log.logs)
    assert log.system_logs is None and len(log.outputs) == 3

    full = cli.get_task(task_id, view="FULL")
    assert full.inputs[0].content == "payload\n"
    assert [e.stdout.strip() for e in full.logs[0].logs] == ["first ran", "second fails", "third ran"]
    failed = cli.get_task(executor_tasks["ids"]["stops"], view="FULL")
    assert any("exited with 5" in line for line in failed.logs[0].system_logs)
    assert cli.get_task(executor_tasks["ids"]["stops"], view="BASIC").logs[0].system_logs is None


@pytest.fixture(scope="module")
def listed_tasks(tes_lab):
    """Five tasks under one name prefix: index 1 and 3 fail (EXECUTOR_ERROR), the rest COMPLETE;
    tags say which run and whether the index is odd."""
    run = uuid.uuid4().hex[:8]
    cli = client(tes_lab)
    made = []
    for i in range(5):
        parity = "odd" if i % 2 else "even"
        command = ["sh", "-c", f"echo task {i}; exit {1 if i in (1, 3) else 0}"]
        task_id = cli.create_task(tes.Task(name=f"tes-list-{run}-{i}", executors=[tes.Executor(image=BWA_TAG,
                                                                                             command=command)],
                                           tags={"run": run, "parity": parity}))
        made.append({"id": task_id, "index": i, "parity": parity,
                     "state": "EXECUTOR_ERROR" if i in (1, 3) else "COMPLETE"})
    _wait_all(tes_lab, f"tes-list-{run}-", 5)
    return {"run": run, "tasks": made}


def _walk(lab, page_size: int, **params) -> list[list[tes.Task]]:
    pages, token = [], None
    while True:
        answer = _list(lab, page_size=page_size, **params, **({"page_token": token} if token else {}))
        pages.append(answer.tasks or [])
        token = answer.next_page_token
        if not token:
            return pages
        assert len(pages) < 100


def test_list_filters_by_name_state_and_tags(tes_lab, listed_tasks):
    run, made = listed_tasks["run"], listed_tasks["tasks"]

    def ids(**params) -> set[str]:
        found = [t.id for page in _walk(tes_lab, 100, **params) for t in page]
        assert len(found) == len(set(found))
        return set(found)

    mine = {t["id"] for t in made}
    assert ids(name_prefix=f"tes-list-{run}-") == mine
    assert ids(name_prefix=f"tes-list-{run}-3") == {made[3]["id"]}
    for state in ("COMPLETE", "EXECUTOR_ERROR"):
        expected = {t["id"] for t in made if t["state"] == state}
        assert ids(name_prefix=f"tes-list-{run}-", state=state) == expected
        # Without the prefix the lab's other tasks come too, each in the state asked for.
        everything = [t for page in _walk(tes_lab, 3, state=state, view="MINIMAL") for t in page]
        assert {t.state for t in everything} == {state}
        assert {t.id for t in everything} & mine == expected
    assert ids(tag_key="run", tag_value=run) == mine
    assert ids(tag_key=["run", "parity"], tag_value=[run, "odd"]) == {t["id"] for t in made if t["parity"] == "odd"}
    assert ids(tag_key=["parity", "run"], tag_value=["", run]) == mine  # an empty value matches any
    assert ids(tag_key="run", tag_value=run, state="EXECUTOR_ERROR", name_prefix=f"tes-list-{run}-1") == {
        made[1]["id"]}
    assert ids(tag_key="run", tag_value="no-such-run") == set()


def test_pages_walk_every_task_once_and_are_full_while_more_follow(tes_lab, listed_tasks):
    run, made = listed_tasks["run"], listed_tasks["tasks"]
    pages = _walk(tes_lab, 2, name_prefix=f"tes-list-{run}-")
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(t.id for page in pages for t in page) == sorted(t["id"] for t in made)

    # The real client's own paging, over the whole lab (py-tes 1.1.4 sends no filters).
    cli = client(tes_lab)
    whole = cli.list_tasks(view="MINIMAL", page_size=100)
    assert whole.next_page_token is None
    walked, token, sizes = [], None, []
    while True:
        page = cli.list_tasks(view="MINIMAL", page_size=2, page_token=token)
        sizes.append(len(page.tasks or []))
        walked += [t.id for t in page.tasks or []]
        token = page.next_page_token
        if not token:
            break
    assert walked == [t.id for t in whole.tasks]  # same order, no duplicates, none missing
    assert len(walked) == len(set(walked)) and {t["id"] for t in made} <= set(walked)
    assert all(size == 2 for size in sizes[:-1]) and 1 <= sizes[-1] <= 2


def test_a_full_list_carries_the_logs_get_gives(tes_lab, listed_tasks, executor_tasks):
    cli = client(tes_lab)
    for name_prefix in (f"tes-list-{listed_tasks['run']}-", f"tes-exec-{executor_tasks['run']}-"):
        for view in ("BASIC", "FULL"):
            listed = [t for page in _walk(tes_lab, 2, name_prefix=name_prefix, view=view) for t in page]
            assert listed and all(t.logs and t.logs[0].logs for t in listed)
            for item in listed:
                assert item.as_dict() == cli.get_task(item.id, view=view).as_dict()
    full = {t.id: t for t in _list(tes_lab, name_prefix=f"tes-list-{listed_tasks['run']}-", view="FULL").tasks}
    for made in listed_tasks["tasks"]:
        (executor,) = full[made["id"]].logs[0].logs
        assert executor.exit_code == (1 if made["index"] in (1, 3) else 0)
        assert executor.stdout.strip() == f"task {made['index']}"


def test_proxy_maps_py_tes_0_4_paths():
    assert api_path("/v1/tasks") == "/ga4gh/tes/v1/tasks"
    assert api_path("/v1/tasks/service-info") == "/ga4gh/tes/v1/service-info"
    assert api_path("/v1/tasks/j-1:cancel") == "/ga4gh/tes/v1/tasks/j-1:cancel"
    assert api_path("/ga4gh/tes/v1/tasks") == "/ga4gh/tes/v1/tasks"
    assert api_path("/jobs") is None
    # Nothing that some later normalisation could turn into a path outside TES is forwarded.
    for sneaky in ("/v1/../jobs", "/ga4gh/tes/v1/../../../tokens", "/v1/%2e%2e/jobs", "/v1/tasks%2F..%2F..",
                   "/ga4gh/other", "/v1/./tasks"):
        assert api_path(sneaky) is None, sneaky


# --- bearer tokens: py-tes straight at the local front, no proxy ---------------------------------

def test_py_tes_direct_with_the_ready_lines_token(tes_lab):
    info = tes_lab.info
    assert info["tes_endpoint"] == info["api"] and tokens.parse(info["tes_token"])
    # Bearer, as py-tes sends a token, and Basic with the token as password (Snakemake's plugin).
    cli = tes.HTTPClient(info["tes_endpoint"], token=info["tes_token"], timeout=30)
    basic = tes.HTTPClient(info["tes_endpoint"], user="None", password=info["tes_token"], timeout=30)
    assert f"s3://{info['buckets']['results']}/tes/" in basic.get_service_info().storage
    task_id = cli.create_task(tes.Task(name="tes-direct", executors=[
        tes.Executor(image=BWA_TAG, command=["sh", "-c", "echo reached without a proxy"])]))
    done = wait(basic, task_id)
    assert done.state == "COMPLETE", done.logs
    assert "reached without a proxy" in done.logs[0].logs[0].stdout
    dynamodb = boto3.client("dynamodb", endpoint_url=info["aws_endpoint"], region_name=info["region"],
                            aws_access_key_id=info["credentials"]["access_key_id"],
                            aws_secret_access_key=info["credentials"]["secret_access_key"])
    record = dynamodb.get_item(TableName=names.ledger_table("example"), Key={"job_id": {"S": task_id}})["Item"]
    assert record["submitted_by"]["S"].endswith(":user/local-scientist")  # the token's owner
    # SigV4 is not what /ga4gh takes (the deployed API's authorizer would deny it too); no header is 401.
    assert requests.get(f"{info['api']}/ga4gh/tes/v1/service-info", timeout=30).status_code == 401
    # The lab's own URL + /v1/tasks (py-tes 0.4 and nf-ga4gh given the bare URL) is the same endpoint.
    bearer = {"Authorization": f"Bearer {info['tes_token']}"}
    short = requests.get(f"{info['api']}/v1/tasks/{task_id}", params={"view": "MINIMAL"}, headers=bearer, timeout=30)
    assert short.status_code == 200 and short.json() == {"id": task_id, "state": "COMPLETE"}
    assert requests.get(f"{info['api']}/v1/tasks", timeout=30).status_code == 401


def test_a_revoked_token_is_refused(tes_lab):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(tes_lab.home)}
    made = json.loads(subprocess.run([LABBATCH, "token", "create", "--name", "e2e", "--json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    url = f"{tes_lab.info['tes_endpoint']}/ga4gh/tes/v1/tasks"
    assert requests.get(url, headers={"Authorization": f"Bearer {made['token']}"}, timeout=30).status_code == 200
    listed = subprocess.run([LABBATCH, "token", "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert made["id"] in listed and made["token"] not in listed
    subprocess.run([LABBATCH, "token", "revoke", made["id"]], env=env, capture_output=True, text=True, check=True)
    refused = requests.get(url, headers={"Authorization": f"Bearer {made['token']}"}, timeout=30)
    assert refused.status_code in (401, 403)
    with pytest.raises(requests.HTTPError) as failed:
        tes.HTTPClient(tes_lab.info["tes_endpoint"], token=made["token"], timeout=30).get_service_info()
    assert failed.value.response.status_code in (401, 403)


def test_engine_config_from_a_running_local_lab_reaches_the_tasks_route(tes_lab):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(tes_lab.home)}
    for engine, *extra in (["snakemake"], ["nextflow", "--tes"], ["toil"], ["cromwell"]):
        config = json.loads(subprocess.run([LABBATCH, "engine-config", engine, *extra, "--lab", "example", "--json"],
                                           env=env, capture_output=True, text=True, check=True).stdout)
        assert config["auth"]["bearer"] == tes_lab.info["tes_token"]
        tasks = config["url"] if engine == "cromwell" else config["url"] + "/v1/tasks"
        answer = requests.get(tasks, headers={"Authorization": f"Bearer {config['auth']['bearer']}"}, timeout=30)
        assert answer.status_code == 200 and "tasks" in answer.json()


def test_doctor_checks_the_tes_endpoint(tes_lab):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(tes_lab.home)}
    doctor = subprocess.run([LABBATCH, "doctor", "--no-canary", "--json"], env=env, capture_output=True, text=True,
                            timeout=120)
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    tes_check = checks["TES endpoint"]
    assert tes_check["ok"], tes_check
    assert f"s3://{tes_lab.info['buckets']['results']}/tes/" in tes_check["detail"]
    assert "labbatch-bwa:" in tes_check["detail"]
