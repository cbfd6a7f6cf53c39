"""Local Batch: jobs really run, through Batch's states, seen through a real boto3 batch client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from test_batch_helpers import (ON_DEMAND_QUEUE, SLEEPER_WITH_CHILD, SPOT_QUEUE, definition, describe, env_override,
                                local_batch, process_gone, wait_for, wait_for_file, wait_gone)

from labbatch.local.batch.service import LocalBatchService
from labbatch.local.batch.executor import LocalBatch

PRINT_ENV = ("import json, os\n"
             "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(('AWS_', 'LABBATCH_', 'GREETING'))}), flush=True)\n"
             "import sys; print('to stderr', file=sys.stderr)")


def test_job_succeeds_through_batch_states_and_events_in_eventbridge_shape(tmp_path):
    with local_batch(tmp_path, [definition("hello", PRINT_ENV, environment={"GREETING": "definition"})],
                     extra_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) as (batch, client, recorder):
        answer = client.submit_job(jobName="hello-1", jobQueue=SPOT_QUEUE, jobDefinition="hello",
                                   containerOverrides=env_override(LABBATCH_JOB_ID="j-1"), tags={"lab": "x"})
        job = wait_for(client, answer["jobId"])
        assert batch.wait_for_events()

    assert answer["jobArn"] == f"arn:aws:batch:us-east-1:123456789012:job/{answer['jobId']}"
    assert job["status"] == "SUCCEEDED"
    assert job["statusReason"] == "Essential container in task exited"
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert job["jobQueue"].endswith(f":job-queue/{SPOT_QUEUE}")
    assert job["jobDefinition"].endswith(":job-definition/hello:1")
    assert job["tags"] == {"lab": "x"}
    [attempt] = job["attempts"]
    assert attempt["container"]["exitCode"] == 0
    # The job ended when its last attempt did: one moment, as Batch reports both.
    assert (attempt["startedAt"], attempt["stoppedAt"]) == (job["startedAt"], job["stoppedAt"])
    stream = attempt["container"]["logStreamName"]
    assert stream.startswith("hello/default/") and len(stream.rsplit("/", 1)[1]) == 32
    assert job["container"]["logStreamName"] == stream
    assert {"name": "GREETING", "value": "definition"} in job["container"]["environment"]

    printed = json.loads(recorder.logs[stream][0])
    assert recorder.logs[stream][1] == "to stderr"
    assert printed["AWS_BATCH_JOB_ID"] == answer["jobId"]
    assert printed["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert printed["AWS_BATCH_JQ_NAME"] == SPOT_QUEUE
    assert printed["AWS_BATCH_CE_NAME"] == "lab-spot-ce"
    assert printed["LABBATCH_JOB_ID"] == "j-1"
    assert printed["LABBATCH_SCRATCH_DIR"] == str(tmp_path / "scratch")
    assert printed["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in printed

    assert recorder.statuses(answer["jobId"]) == ["SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    last = recorder.events[-1]
    assert set(last) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert last["detail-type"] == "Batch Job State Change" and last["source"] == "aws.batch"
    assert last["resources"] == [answer["jobArn"]] and last["region"] == "us-east-1"
    assert last["detail"] == job


def test_non_zero_exit_fails_with_its_exit_code_and_one_attempt(tmp_path):
    with local_batch(tmp_path, [definition("fails", "import sys; sys.exit(3)")]) as (_, client, _recorder):
        job_id = client.submit_job(jobName="f", jobQueue=SPOT_QUEUE, jobDefinition="fails")["jobId"]
        job = wait_for(client, job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Essential container in task exited"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [3]
    assert job["container"]["exitCode"] == 3


def test_command_override_and_parameters_are_honoured(tmp_path):
    with local_batch(tmp_path, [definition("echo", "print('Ref::word')", parameters={"word": "default"})]) \
            as (_, client, recorder):
        default = client.submit_job(jobName="d", jobQueue=SPOT_QUEUE, jobDefinition="echo:1")["jobId"]
        given = client.submit_job(jobName="g", jobQueue=SPOT_QUEUE, jobDefinition="echo", parameters={"word": "given"})["jobId"]
        jobs = [wait_for(client, default), wait_for(client, given)]

    assert [recorder.logs[j["container"]["logStreamName"]] for j in jobs] == [["default"], ["given"]]


def test_array_job_children_get_their_index_and_the_parent_sums_them_up(tmp_path):
    code = ("import os, sys\n"
            "index = int(os.environ['AWS_BATCH_JOB_ARRAY_INDEX'])\n"
            "print('child', index)\n"
            "sys.exit(1 if index == 2 else 0)\n")
    with local_batch(tmp_path, [definition("array", code)]) as (batch, client, recorder):
        parent_id = client.submit_job(jobName="arr", jobQueue=SPOT_QUEUE, jobDefinition="array",
                                      arrayProperties={"size": 3})["jobId"]
        parent = wait_for(client, parent_id)
        children = client.list_jobs(arrayJobId=parent_id, filters=[{"name": "JOB_NAME", "values": ["arr"]}])["jobSummaryList"]
        child_details = client.describe_jobs(jobs=[f"{parent_id}:{i}" for i in range(3)])["jobs"]
        listed_in_queue = client.list_jobs(jobQueue=SPOT_QUEUE, jobStatus="FAILED")["jobSummaryList"]
        assert batch.wait_for_events()

    assert parent["status"] == "FAILED"
    assert parent["statusReason"] == "Array Child Job failed"
    assert parent["arrayProperties"]["size"] == 3
    summary = parent["arrayProperties"]["statusSummary"]
    assert summary["SUCCEEDED"] == 2 and summary["FAILED"] == 1 and sum(summary.values()) == 3
    assert [c["jobId"] for c in children] == [f"{parent_id}:{i}" for i in range(3)]
    assert [c["arrayProperties"]["index"] for c in children] == [0, 1, 2]
    assert [c["status"] for c in child_details] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]
    for index, child in enumerate(child_details):
        assert recorder.logs[child["container"]["logStreamName"]] == [f"child {index}"]
    # Children are listed under their parent, not in the queue.
    assert [j["jobId"] for j in listed_in_queue] == [parent_id]
    assert recorder.statuses(parent_id) == ["SUBMITTED", "PENDING", "FAILED"]
    assert recorder.statuses(f"{parent_id}:1") == ["PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]


def test_never_more_vcpus_at_once_than_the_machine_cap(tmp_path):
    code = ("import os, time\n"
            "out = os.path.join(os.environ['OUT'], os.environ['AWS_BATCH_JOB_ID'])\n"
            "start = time.time(); time.sleep(0.4)\n"
            "open(out, 'w').write(f'{start} {time.time()}')\n")
    out = tmp_path / "out"
    out.mkdir()
    with local_batch(tmp_path, [definition("sleep", code, vcpus=1, environment={"OUT": str(out)})], max_vcpus=2) \
            as (_, client, _recorder):
        ids = [client.submit_job(jobName=f"s{i}", jobQueue=SPOT_QUEUE, jobDefinition="sleep")["jobId"] for i in range(3)]
        jobs = [wait_for(client, job_id) for job_id in ids]

    assert all(job["status"] == "SUCCEEDED" for job in jobs)
    spans = [tuple(map(float, (out / job_id).read_text().split())) for job_id in ids]
    moments = sorted({t for span in spans for t in span})
    most_at_once = max(sum(1 for start, stop in spans if start <= t < stop) for t in moments)
    assert most_at_once == 2
    # FIFO: the third started only after one of the first two had finished.
    assert spans[2][0] >= min(spans[0][1], spans[1][1])


def test_higher_priority_queue_is_served_first(tmp_path):
    code = "import time; time.sleep(0.3)"
    with local_batch(tmp_path, [definition("d", code)], max_vcpus=1) as (_, client, _recorder):
        blocker = client.submit_job(jobName="b", jobQueue=SPOT_QUEUE, jobDefinition="d")["jobId"]
        wait_for(client, blocker, ("RUNNING",))
        low = client.submit_job(jobName="low", jobQueue=SPOT_QUEUE, jobDefinition="d")["jobId"]
        high = client.submit_job(jobName="high", jobQueue=ON_DEMAND_QUEUE, jobDefinition="d")["jobId"]
        low_job, high_job = wait_for(client, low), wait_for(client, high)

    assert high_job["startedAt"] < low_job["startedAt"]


def test_terminate_stops_a_running_job_and_its_whole_process_group(tmp_path):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    ignores_sigterm = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SLEEPER_WITH_CHILD
    with local_batch(tmp_path, [definition("sleeper", ignores_sigterm, environment={"PIDS_DIR": str(pids_dir)})],
                     kill_grace_seconds=0.5) as (batch, client, recorder):
        job_id = client.submit_job(jobName="t", jobQueue=SPOT_QUEUE, jobDefinition="sleeper")["jobId"]
        pids = [int(p) for p in wait_for_file(pids_dir / job_id).split()]
        client.terminate_job(jobId=job_id, reason="Stopped by alice")
        job = wait_for(client, job_id)
        assert batch.wait_for_events()

    assert wait_gone(pids)
    assert job["status"] == "FAILED" and job["isTerminated"] is True
    assert job["statusReason"] == "Stopped by alice"
    [attempt] = job["attempts"]
    assert attempt["statusReason"] == "Stopped by alice"
    assert attempt["container"]["exitCode"] == 137  # it ignored SIGTERM, so SIGKILL after the grace period
    assert recorder.statuses(job_id)[-2:] == ["RUNNING", "FAILED"]


def test_cancel_takes_a_queued_job_out_and_leaves_a_running_one_alone(tmp_path):
    with local_batch(tmp_path, [definition("d", "import time; time.sleep(1.0)")], max_vcpus=1) as (_, client, recorder):
        running = client.submit_job(jobName="r", jobQueue=SPOT_QUEUE, jobDefinition="d")["jobId"]
        wait_for(client, running, ("RUNNING",))
        queued = client.submit_job(jobName="q", jobQueue=SPOT_QUEUE, jobDefinition="d")["jobId"]
        client.cancel_job(jobId=queued, reason="Not needed")
        client.cancel_job(jobId=running, reason="Too late")  # Batch: succeeds, cancels nothing
        cancelled = wait_for(client, queued)
        finished = wait_for(client, running)

    assert cancelled["status"] == "FAILED" and cancelled["isCancelled"] is True
    assert cancelled["statusReason"] == "Not needed" and cancelled["attempts"] == []
    assert recorder.statuses(queued) == ["SUBMITTED", "RUNNABLE", "FAILED"]
    assert finished["status"] == "SUCCEEDED" and finished["isCancelled"] is False


def test_terminating_an_array_parent_stops_every_child(tmp_path):
    with local_batch(tmp_path, [definition("d", "import time; time.sleep(300)")], max_vcpus=1) as (_, client, _recorder):
        parent_id = client.submit_job(jobName="a", jobQueue=SPOT_QUEUE, jobDefinition="d",
                                      arrayProperties={"size": 3})["jobId"]
        wait_for(client, f"{parent_id}:0", ("RUNNING",))
        client.terminate_job(jobId=parent_id, reason="Whole array stopped")
        parent = wait_for(client, parent_id)
        children = client.describe_jobs(jobs=[f"{parent_id}:{i}" for i in range(3)])["jobs"]

    assert parent["status"] == "FAILED" and parent["statusReason"] == "Whole array stopped"
    assert [c["status"] for c in children] == ["FAILED"] * 3
    assert children[0]["isTerminated"] and children[1]["isCancelled"] and children[2]["isCancelled"]


def test_close_stops_every_process_and_removes_the_scratch_root(tmp_path):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    batch = LocalBatch(
        compute_environments=[{"name": "ce", "kind": "on-demand"}],
        queues=[{"name": "q", "priority": 1, "compute_environments": ["ce"]}],
        job_definitions=[definition("sleeper", SLEEPER_WITH_CHILD, environment={"PIDS_DIR": str(pids_dir)})],
        scratch_root=tmp_path / "scratch", max_vcpus=2, kill_grace_seconds=0.5,
    )
    service = LocalBatchService(batch).start()
    import boto3

    client = boto3.client("batch", endpoint_url=service.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    ids = [client.submit_job(jobName=f"s{i}", jobQueue="q", jobDefinition="sleeper")["jobId"] for i in range(3)]
    pids = [int(p) for job_id in ids[:2] for p in wait_for_file(pids_dir / job_id).split()]
    (tmp_path / "scratch" / "leftover").write_text("x")
    assert describe(client, ids[2])["status"] == "RUNNABLE"

    started = time.monotonic()
    service.close()

    assert time.monotonic() - started < 10
    assert all(process_gone(pid) for pid in pids) or wait_gone(pids, 2)
    assert not Path(tmp_path / "scratch").exists()


@pytest.fixture
def saved_lab(tmp_path):
    """A data dir of lab "example" and the emulated table and log group it restores into; call
    the fixture's value to get the lab's LabData once the test has written its files."""
    import json

    import boto3
    from moto import mock_aws

    from labbatch.local.persistence import LabData

    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}])
        boto3.client("logs", region_name="us-east-1").create_log_group(logGroupName="/g")
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        (data_dir / "lab.json").write_text(json.dumps({"lab": "example", "format": 1}))
        yield data_dir, lambda: LabData(data_dir, lab="example", buckets={}, table="t", log_group="/g",
                                        client=lambda service: boto3.client(service, region_name="us-east-1"))


def test_jobs_a_saved_ledger_shows_unfinished_are_marked_stopped_when_restored(saved_lab):
    """A lab killed outright (SIGKILL: no last save after its jobs stopped) leaves RUNNING records
    in its data dir; a restore says they stopped with the lab instead of showing them running."""
    import json

    import boto3

    data_dir, lab_data = saved_lab
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    items = [{"job_id": {"S": "j-running"}, "record_type": {"S": "job"}, "status": {"S": "RUNNING"}},
             {"job_id": {"S": "j-array"}, "record_type": {"S": "job"}, "status": {"S": "RUNNING"},
              "children": {"M": {"SUCCEEDED": {"N": "2"}, "RUNNING": {"N": "3"}, "SUBMITTED": {"N": "1"},
                                 "FAILED": {"N": "1"}}}},
             {"job_id": {"S": "j-done"}, "record_type": {"S": "job"}, "status": {"S": "SUCCEEDED"}},
             {"job_id": {"S": "j-done/0"}, "status": {"S": "RUNNING"}}]  # a child item: not a job record
    (data_dir / "ledger.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    data = lab_data()
    assert data.claim() is True
    restored = data.restore()
    assert (restored.ledger_items, restored.stopped_jobs) == (4, 2)
    array = dynamodb.get_item(TableName="t", Key={"job_id": {"S": "j-array"}})["Item"]
    assert {k: int(v["N"]) for k, v in array["children"]["M"].items()} == {"SUCCEEDED": 2, "FAILED": 5}
    running = dynamodb.get_item(TableName="t", Key={"job_id": {"S": "j-running"}})["Item"]
    assert running["status"]["S"] == "FAILED" and running["failure"]["S"] == "infrastructure"
    assert "stopped while this job was RUNNING" in running["status_reason"]["S"]
    assert dynamodb.get_item(TableName="t", Key={"job_id": {"S": "j-done"}})["Item"]["status"]["S"] == "SUCCEEDED"


def test_saved_log_events_the_emulator_will_not_take_back_stay_on_disk(saved_lab):
    """CloudWatch Logs (and moto) refuse events older than 14 days: a restore cannot put them
    back, and the next save must not drop them from the data dir."""
    import json
    import time as clock

    data_dir, lab_data = saved_lab
    now = int(clock.time() * 1000)
    old, new = now - 20 * 24 * 3600 * 1000, now - 1000
    (data_dir / "logs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (
        {"stream": "s", "timestamp": old, "message": "three weeks ago"},
        {"stream": "s", "timestamp": new, "message": "just now"})))
    data = lab_data()
    assert data.claim() is True
    assert data.restore().log_events == 1
    data.save()
    kept = [json.loads(line)["message"] for line in (data_dir / "logs.jsonl").read_text().splitlines()]
    assert sorted(kept) == ["just now", "three weeks ago"]


def test_an_unreadable_data_dir_is_refused_naming_it_and_left_as_it_was(saved_lab):
    from labbatch.local.persistence import DataDirError

    data_dir, lab_data = saved_lab
    (data_dir / "ledger.jsonl").write_text("{bad\n")
    data = lab_data()
    data.claim()
    with pytest.raises(DataDirError, match="unreadable"):
        data.restore()
    assert (data_dir / "ledger.jsonl").read_text() == "{bad\n"
