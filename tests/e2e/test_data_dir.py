"""`labbatch local --data-dir`: a lab's buckets, ledger and logs outlive a restart; without it
the lab says it is ephemeral."""

from __future__ import annotations

import gzip
import hashlib
import os

from tests.e2e.conftest import SLOW, start_local
from tests.e2e.test_local_mode import READS_A, assert_stats, fastq, wait


def test_a_lab_restarted_on_the_same_data_dir_still_has_its_inputs_results_ledger_and_logs(tmp_path):
    data_dir = tmp_path / "data"
    first = start_local(tmp_path, "--data-dir", str(data_dir))
    try:
        assert first.info["data_dir"] == str(data_dir) and first.info["ephemeral"] is False
        client = first.client()
        # A binary input whose bytes the test can check after the restart.
        body = gzip.compress(fastq(READS_A)) + os.urandom(4096)
        uri = first.put("inputs", "kept/reads.fastq.gz", gzip.compress(fastq(READS_A)))
        blob = first.put("inputs", "kept/blob.bin", body)
        job = client.submit("fastq-stats", [uri], name="kept-job")
        assert wait(client, job["job_id"])["status"] == "SUCCEEDED"
        running = client.submit("slow", [uri], name="cut-off")
        deadline_status = wait_until_running(client, running["job_id"])
        assert deadline_status == "RUNNING"
    finally:
        assert first.stop() == 0  # SIGTERM: the last save happens after the jobs stop

    second = start_local(tmp_path, "--data-dir", str(data_dir), home=tmp_path / "home2")
    try:
        assert second.info["restored"]["objects"] >= 3 and second.info["restored"]["ledger_items"] >= 2
        client = second.client()
        record = client.get(job["job_id"])
        assert record["status"] == "SUCCEEDED" and record["name"] == "kept-job"
        assert_stats(second.read_json(f"{job['output_prefix']}stats.json"), READS_A)
        bucket, key = blob.removeprefix("s3://").split("/", 1)
        kept = second.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(kept).digest() == hashlib.sha256(body).digest()
        # A job the stop cut off is not left RUNNING for ever: it ended with the lab, and says so.
        # Either its last event reached the ledger before the final save (Batch's "Local mode
        # stopped"), or, on a busy machine, not (the restore marks what the save left unfinished).
        cut_off = client.get(running["job_id"])
        assert cut_off["status"] == "FAILED", cut_off
        assert (cut_off["failure"], "Local mode stopped" in cut_off["status_reason"]) == ("cancelled", True) or (
            cut_off["failure"], "stopped while this job was" in cut_off["status_reason"]) == ("infrastructure", True), \
            cut_off
        # Its job logs came back with it.
        import boto3

        creds = second.info["credentials"]
        events = boto3.client("logs", endpoint_url=second.info["aws_endpoint"], region_name=second.info["region"],
                              aws_access_key_id=creds["access_key_id"],
                              aws_secret_access_key=creds["secret_access_key"]).filter_log_events(
            logGroupName=second.info["log_group"])["events"]
        assert any(job["job_id"] in e["message"] or "stats.json" in e["message"] for e in events), events[:5]
        # New work goes on beside the old.
        again = client.submit("fastq-stats", [uri], name="after-restart")
        assert wait(client, again["job_id"])["status"] == "SUCCEEDED"
    finally:
        assert second.stop() == 0


def wait_until_running(client, job_id: str, timeout: float = 60) -> str:
    import time

    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = client.get(job_id)["status"]
        if status == "RUNNING":
            return status
        time.sleep(0.2)
    return status


def test_without_a_data_dir_the_lab_says_it_is_ephemeral(tmp_path):
    lab = start_local(tmp_path)
    try:
        assert lab.info["ephemeral"] is True and lab.info["data_dir"] is None
    finally:
        assert lab.stop() == 0
    assert "the lab is ephemeral" in lab.stderr_text()


def test_a_data_dir_of_another_lab_is_refused_in_one_line(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "lab.json").write_text('{"lab": "someone-else", "format": 1}')
    try:
        start_local(tmp_path, "--data-dir", str(data_dir))
    except AssertionError as exc:
        message = str(exc)
    else:
        raise AssertionError("a data dir of another lab was accepted")
    assert "labbatch: bad_data_dir:" in message and "someone-else" in message
    assert SLOW  # the test lab's slow pipeline is what the first test cuts off
