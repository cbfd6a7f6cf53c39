"""End to end through `labbatch local`: signed HTTP in, real jobs, results and ledger out."""

from __future__ import annotations

import gzip
import json
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labbatch.client.sdk import LabBatchApiError

from tests.e2e.conftest import start_local

FINAL = {"SUCCEEDED", "FAILED"}


def fastq(reads: list[tuple[str, str]]) -> bytes:
    return "".join(f"@r{i}\n{seq}\n+\n{qual}\n" for i, (seq, qual) in enumerate(reads)).encode()


def expected(reads: list[tuple[str, str]]) -> dict:
    seq = "".join(s for s, _ in reads).upper()
    acgt = sum(seq.count(b) for b in "ACGT")
    quals = [ord(c) - 33 for _, q in reads for c in q]
    return {"reads": len(reads), "bases": len(seq), "gc_fraction": (seq.count("G") + seq.count("C")) / acgt,
            "mean_quality": sum(quals) / len(quals)}


READS_A = [("ACGTNNGGCC", "IIIII#####"), ("ggccAATT", "ABCDEFGH"), ("TTTTTTTTTTGC", "############")]
READS_B = [("GGGGCCCCAT", "IIIIIIIIII")] * 5


def wait(client, job_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(job_id)
        if record["status"] in FINAL:
            return record
        time.sleep(0.2)
    raise AssertionError(f"{job_id} still {record['status']} after {timeout} s")


def assert_stats(got: dict, reads) -> None:
    want = expected(reads)
    assert (got["reads"], got["bases"]) == (want["reads"], want["bases"])
    assert got["gc_fraction"] == pytest.approx(want["gc_fraction"], abs=1e-12)
    assert got["mean_quality"] == pytest.approx(want["mean_quality"], abs=1e-12)


def test_local_mode_prints_its_endpoints_and_is_ready_quickly(local_lab):
    info = local_lab.info
    assert info["api"].startswith("http://127.0.0.1:") and info["aws_endpoint"].startswith("http://127.0.0.1:")
    assert info["lab"] == "example"
    assert set(info["buckets"]) == {"inputs", "references", "results"}
    assert info["credentials"]["access_key_id"] and info["credentials"]["secret_access_key"]
    state = json.loads((local_lab.home / "local" / "example.json").read_text())
    assert state["api"] == info["api"]
    assert (local_lab.home / "local" / "example.json").stat().st_mode & 0o077 == 0


def test_submit_status_list_and_results_match_the_input(local_lab):
    client = local_lab.client()
    uri = local_lab.put("inputs", "e2e/a.fastq.gz", gzip.compress(fastq(READS_A)))
    job = client.submit("fastq-stats", [uri], name="e2e-a")
    record = wait(client, job["job_id"])
    assert record["status"] == "SUCCEEDED", record
    assert len(record["attempts"]) == 1 and record["attempts"][0]["exit_code"] == 0
    assert record["submitted_by"].endswith(":user/local-scientist")
    assert_stats(local_lab.read_json(f"{job['output_prefix']}stats.json"), READS_A)
    manifest = local_lab.read_json(f"{job['output_prefix']}manifest.json")
    assert manifest["status"] == "succeeded" and manifest["job_id"] == job["job_id"]
    listed = [j["job_id"] for j in client.list(pipeline="fastq-stats")["jobs"]]
    assert job["job_id"] in listed


def test_array_job_gives_each_sample_its_own_right_results(local_lab):
    client = local_lab.client()
    a = local_lab.put("inputs", "e2e/arr-a.fastq", fastq(READS_A))
    b = local_lab.put("inputs", "e2e/arr-b.fastq", fastq(READS_B))
    job = client.submit("fastq-stats", samples=[{"name": "a", "inputs": [a]}, {"name": "b", "inputs": [b]}])
    record = wait(client, job["job_id"])
    assert record["status"] == "SUCCEEDED"
    assert {status: n for status, n in record["children"].items() if n} == {"SUCCEEDED": 2}
    assert_stats(local_lab.read_json(f"{job['output_prefix']}a/stats.json"), READS_A)
    assert_stats(local_lab.read_json(f"{job['output_prefix']}b/stats.json"), READS_B)


def simulated(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    reads = []
    for _ in range(count):
        seq = "".join(rng.choice("ACGT") for _ in range(rng.randint(20, 60)))
        reads.append((seq, "".join(chr(33 + rng.randint(2, 40)) for _ in seq)))
    return reads


def test_array_children_run_on_their_own_sample_and_see_shared_inputs_only_as_shared(local_lab):
    """Three samples of 300, 600 and 900 reads and one shared file of 1,000: each child's
    {input} is its own sample's file; the shared file is only ever {shared_input}."""
    client = local_lab.client()
    shared_reads = simulated(1000, seed=0)
    shared = local_lab.put("inputs", "e2e/shared/common.fastq", fastq(shared_reads))
    samples, reads = [], {}
    for name, count in (("s300", 300), ("s600", 600), ("s900", 900)):
        reads[name] = simulated(count, seed=count)
        uri = local_lab.put("inputs", f"e2e/shared/{name}.fastq", fastq(reads[name]))
        samples.append({"name": name, "inputs": [uri]})
    job = client.submit("shared-stats", [shared], samples=samples)
    record = wait(client, job["job_id"])
    assert record["status"] == "SUCCEEDED", record
    for name, own in reads.items():
        assert_stats(local_lab.read_json(f"{job['output_prefix']}{name}/stats.json"), own)
        assert_stats(local_lab.read_json(f"{job['output_prefix']}{name}/shared/stats.json"), shared_reads)
        manifest = local_lab.read_json(f"{job['output_prefix']}{name}/manifest.json")
        argv = manifest["tool"]["argv"]
        assert argv[3].endswith(f"{name}.fastq") and argv[4].endswith("common.fastq")


def test_shared_inputs_a_pipeline_does_not_use_are_refused_and_nothing_runs(local_lab):
    """The ambiguous request of old: fastq-stats names only {input}, so top-level inputs beside
    samples would be staged for nothing (or, before, read in place of each sample's own)."""
    client = local_lab.client()
    shared = local_lab.put("inputs", "e2e/ambiguous/shared.fastq", fastq(READS_A))
    own = local_lab.put("inputs", "e2e/ambiguous/own.fastq", fastq(READS_B))
    before = {j["job_id"] for j in client.list(pipeline="fastq-stats")["jobs"]}
    with pytest.raises(LabBatchApiError) as refusal:
        client.submit("fastq-stats", [shared], samples=[{"name": "a", "inputs": [own]}, {"name": "b", "inputs": [own]}])
    assert refusal.value.code == "shared_inputs_unused" and refusal.value.details["field"] == "inputs"
    assert "{shared_input}" in str(refusal.value)
    assert {j["job_id"] for j in client.list(pipeline="fastq-stats")["jobs"]} == before


def test_idempotent_retry_returns_the_same_job_and_runs_it_once(local_lab):
    client = local_lab.client()
    uri = local_lab.put("inputs", "e2e/idem.fastq", fastq(READS_B))
    first = client.submit("fastq-stats", [uri], idempotency_key="retry-me-1")
    second = client.submit("fastq-stats", [uri], idempotency_key="retry-me-1")
    assert first["job_id"] == second["job_id"] and first["batch_job_id"] == second["batch_job_id"]
    wait(client, first["job_id"])
    same = [j for j in client.list(pipeline="fastq-stats")["jobs"] if j["job_id"] == first["job_id"]]
    assert len(same) == 1


def test_cancel_of_a_running_job_stops_it_and_removes_its_scratch(local_lab):
    client = local_lab.client()
    uri = local_lab.put("inputs", "e2e/slow.txt", b"x")
    job = client.submit("slow", [uri])
    deadline = time.monotonic() + 60
    while client.get(job["job_id"])["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    scratch = Path(local_lab.info["scratch"]) / "labbatch"
    deadline = time.monotonic() + 30
    while not any(scratch.glob(f"{job['job_id']}*")):  # the runner has made its attempt directory
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client.cancel(job["job_id"])
    record = wait(client, job["job_id"], timeout=60)
    assert record["status"] == "FAILED"
    assert not any(scratch.glob(f"{job['job_id']}*"))
    with pytest.raises(LabBatchApiError) as refused:
        client.cancel(job["job_id"])
    assert refused.value.status == 409


def test_corrupt_input_fails_the_job_with_a_manifest_under_its_prefix(local_lab):
    client = local_lab.client()
    uri = local_lab.put("inputs", "e2e/corrupt.fastq", b"@r1\nACGT\n+\nII\n")  # quality shorter than sequence
    job = client.submit("fastq-stats", [uri])
    record = wait(client, job["job_id"])
    assert record["status"] == "FAILED"
    assert all(a["exit_code"] not in (0, None) for a in record["attempts"])
    manifest = local_lab.read_json(f"{job['output_prefix']}manifest.json")
    assert manifest["status"] == "failed" and manifest["failed_phase"] == "run"
    assert manifest["tool"]["exit_code"] not in (0, None)


def test_unsigned_and_badly_signed_requests_are_refused(local_lab):
    request = urllib.request.Request(f"{local_lab.info['api']}/pipelines")
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request, timeout=10)
    assert unsigned.value.code == 403
    assert json.loads(unsigned.value.read())["error"]["code"] == "forbidden"
    with pytest.raises(LabBatchApiError) as wrong_secret:
        local_lab.client(secret="not-the-secret").pipelines()
    assert wrong_secret.value.status == 403


@pytest.mark.parametrize("body,field", [
    ({"pipeline": "nope", "inputs": []}, "pipeline"),
    ({"pipeline": "fastq-stats", "inputs": ["s3://someone-elses-bucket/x.fastq"]}, "inputs[0]"),
    ({"pipeline": "fastq-stats", "inputs": ["s3://labbatch-example-inputs-123456789012-us-east-1/missing.fq"]},
     "inputs[0]"),
    ({"pipeline": "fastq-stats", "inputs": [], "vcpus": 10_000}, "vcpus"),
])
def test_bad_requests_are_refused_naming_the_field_and_run_nothing(local_lab, body, field):
    client = local_lab.client()
    before = {j["job_id"] for j in client.list()["jobs"]}
    with pytest.raises(LabBatchApiError) as refused:
        client.request("POST", "/jobs", body=body)
    assert 400 <= refused.value.status < 500
    assert refused.value.details.get("field", "").startswith(field.split("[")[0])
    assert {j["job_id"] for j in client.list()["jobs"]} == before


def test_spot_reclaims_at_rate_one_fail_spot_jobs_and_spare_on_demand(tmp_path):
    lab = start_local(tmp_path, "--spot-interruptions", "1.0", "--seed", "3")
    try:
        client = lab.client()
        uri = lab.put("inputs", "r/a.fastq", fastq(READS_A))
        spot = client.submit("brief-stats", [uri], queue="spot")
        on_demand = client.submit("brief-stats", [uri], queue="on-demand")
        spot_record, od_record = wait(client, spot["job_id"]), wait(client, on_demand["job_id"])
        assert spot_record["status"] == "FAILED"
        assert len(spot_record["attempts"]) == 3  # the job definition's attempts, all reclaimed
        assert all(a["reason"] is None or "Host EC2" in (a.get("status_reason") or a["reason"] or "")
                   for a in spot_record["attempts"])
        assert spot_record["status_reason"].startswith("Host EC2 (instance i-")
        assert od_record["status"] == "SUCCEEDED" and len(od_record["attempts"]) == 1
        assert_stats(lab.read_json(f"{on_demand['output_prefix']}stats.json"), READS_A)
    finally:
        assert lab.stop() == 0


def test_spot_reclaims_at_a_lower_rate_are_retried_to_correct_results(tmp_path):
    lab = start_local(tmp_path, "--spot-interruptions", "0.5", "--seed", "11")
    try:
        client = lab.client()
        uris = [lab.put("inputs", f"r/{i}.fastq", fastq(READS_B if i % 2 else READS_A)) for i in range(6)]
        jobs = [client.submit("brief-stats", [u], queue="spot") for u in uris]
        records = [wait(client, j["job_id"], timeout=120) for j in jobs]
        retried = [r for r in records if len(r["attempts"]) > 1]
        assert retried, "with rate 0.5 and this seed some attempt is reclaimed"
        for job, record, i in zip(jobs, records, range(6)):
            if record["status"] == "SUCCEEDED":
                assert_stats(lab.read_json(f"{job['output_prefix']}stats.json"), READS_B if i % 2 else READS_A)
        assert any(r["status"] == "SUCCEEDED" for r in retried)
    finally:
        assert lab.stop() == 0


def test_busy_port_and_bad_lab_give_one_line_errors(tmp_path, local_lab):
    import subprocess

    from tests.e2e.conftest import LABBATCH
    port = local_lab.info["api"].rsplit(":", 1)[1]
    busy = subprocess.run([LABBATCH, "local", "--port", port], capture_output=True, text=True, timeout=60)
    assert busy.returncode != 0
    assert busy.stderr.strip().count("\n") == 0 and "port_busy" in busy.stderr
    labs = tmp_path / "bad"
    labs.mkdir()
    (labs / "example.yaml").write_text("name: example\npipelines: {}\n")
    bad = subprocess.run([LABBATCH, "local", "--labs-dir", str(labs)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0
    assert "bad_lab" in bad.stderr and "pipelines" in bad.stderr


def test_a_second_local_lab_under_a_running_name_is_refused_and_the_first_keeps_working(tmp_path):
    import os
    import subprocess

    from tests.e2e.conftest import LABBATCH, test_labs_dir

    first = start_local(tmp_path)
    state_file = first.home / "local" / "example.json"
    try:
        before = state_file.read_text()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(first.home)}
        second = subprocess.run([LABBATCH, "local", "--labs-dir", str(test_labs_dir(tmp_path))],
                                capture_output=True, text=True, timeout=60, env=env)
        assert second.returncode == 1 and second.stdout == ""
        assert second.stderr.strip().count("\n") == 0, second.stderr
        assert second.stderr.startswith("labbatch: lab_running: local lab example is already running")
        assert f"PID {first.process.pid}" in second.stderr and first.info["api"] in second.stderr
        assert state_file.read_text() == before

        # The first lab works on, and the client still finds it by its state file alone.
        listed = subprocess.run([LABBATCH, "list", "--json"], capture_output=True, text=True, timeout=60, env=env)
        assert listed.returncode == 0, listed.stderr
        client = first.client()
        job = client.submit("fastq-stats", [first.put("inputs", "second/a.fastq", fastq(READS_A))])
        assert wait(client, job["job_id"])["status"] == "SUCCEEDED"

        # Under a name of its own, the same lab runs beside it; stopping it leaves the first alone.
        other = start_local(tmp_path, "--name", "other")
        assert other.info["name"] == "other" and (first.home / "local" / "other.json").exists()
        assert other.stop() == 0
        assert not (first.home / "local" / "other.json").exists() and state_file.read_text() == before
    finally:
        assert first.stop() == 0
    assert not state_file.exists()


def test_a_state_file_left_by_a_dead_lab_is_taken_over(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])  # once reaped, its PID names no process
    dead.wait()
    state_file = tmp_path / "home" / "local" / "example.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text(json.dumps({"api": "http://127.0.0.1:9", "pid": dead.pid, "lab": "example",
                                      "credentials": {"access_key_id": "x", "secret_access_key": "y"}}))
    lab = start_local(tmp_path)
    try:
        state = json.loads(state_file.read_text())
        assert state["pid"] == lab.process.pid and state["api"] == lab.info["api"]
    finally:
        assert lab.stop() == 0


def test_sigterm_stops_jobs_cleans_scratch_and_exits_zero(tmp_path):
    lab = start_local(tmp_path)
    client = lab.client()
    job = client.submit("slow", [lab.put("inputs", "s.txt", b"x")])
    deadline = time.monotonic() + 60
    while client.get(job["job_id"])["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert lab.stop() == 0
    assert not Path(lab.info["scratch"]).exists()
    assert not (lab.home / "local" / "example.json").exists()


def test_a_job_that_fails_for_good_is_announced_on_the_alert_topic(local_lab):
    creds = local_lab.info["credentials"]
    import boto3
    kwargs = dict(endpoint_url=local_lab.info["aws_endpoint"], region_name=local_lab.info["region"],
                  aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    sns, sqs = boto3.client("sns", **kwargs), boto3.client("sqs", **kwargs)
    queue = sqs.create_queue(QueueName="e2e-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=local_lab.info["alert_topic"], Protocol="sqs", Endpoint=queue_arn)

    client = local_lab.client()
    uri = local_lab.put("inputs", "e2e/notice-corrupt.fastq", b"@r1\nACGT\n+\nI\n")
    job = client.submit("fastq-stats", [uri])
    assert wait(client, job["job_id"])["status"] == "FAILED"
    deadline = time.monotonic() + 10
    messages = []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    [message] = [json.loads(m["Body"]) for m in messages]
    assert job["job_id"] in message["Subject"] and "(application)" in message["Subject"]
    assert "Submitted by:  arn:aws:iam::123456789012:user/local-scientist" in message["Message"]
    assert "/labbatch/example/jobs" in message["Message"]


def test_stdout_carries_only_the_ready_line(tmp_path):
    lab = start_local(tmp_path)
    client = lab.client()
    job = client.submit("fastq-stats", [lab.put("inputs", "o.fastq", fastq(READS_B))])
    wait(client, job["job_id"])
    client.list()
    assert lab.stop() == 0
    assert lab.process.stdout.read() == ""  # handler logs went to stderr
    assert "Ledger updated" in lab.stderr_text()


def test_sigterm_stops_the_lab_whichever_of_its_threads_the_kernel_hands_it_to(tmp_path):
    """A process-directed signal goes to any thread that does not block it; Python runs the
    handler only in the main thread, so a main thread asleep in an untimed wait never saw a
    SIGTERM that another thread took, and the lab ran on. Sent here to a worker thread on purpose."""
    import ctypes
    import os
    import signal

    lab = start_local(tmp_path)
    pid = lab.process.pid
    workers = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
    assert workers, "the lab has worker threads (server, scheduler, emulator)"
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_TGKILL = 234 if os.uname().machine == "x86_64" else 131  # aarch64
    assert libc.syscall(SYS_TGKILL, pid, workers[-1], signal.SIGTERM) == 0, ctypes.get_errno()
    assert lab.process.wait(timeout=30) == 0
