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
from pathlib import Path

import boto3
import pytest
import requests
import tes
import yaml

from labbatch_contract import names, tokens

from labbatch.tes_proxy import api_path

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


def test_proxy_maps_py_tes_0_4_paths():
    assert api_path("/v1/tasks") == "/ga4gh/tes/v1/tasks"
    assert api_path("/v1/tasks/service-info") == "/ga4gh/tes/v1/service-info"
    assert api_path("/v1/tasks/j-1:cancel") == "/ga4gh/tes/v1/tasks/j-1:cancel"
    assert api_path("/ga4gh/tes/v1/tasks") == "/ga4gh/tes/v1/tasks"
    assert api_path("/jobs") is None


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
    for engine in ("snakemake", "nextflow", "toil", "cromwell"):
        config = json.loads(subprocess.run([LABBATCH, "engine-config", engine, "--lab", "example", "--json"], env=env,
                                           capture_output=True, text=True, check=True).stdout)
        assert config["auth"]["bearer"] == tes_lab.info["tes_token"]
        tasks = config["url"] if engine == "cromwell" else config["url"] + "/v1/tasks"
        answer = requests.get(tasks, headers={"Authorization": f"Bearer {config['auth']['bearer']}"}, timeout=30)
        assert answer.status_code == 200 and "tasks" in answer.json()
