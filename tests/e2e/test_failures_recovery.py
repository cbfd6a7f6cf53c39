"""Failure classes and recovery end to end through `labbatch local`: real attempts reclaimed,
killed for memory or failing on their own, classified by the real status updater from the
local executor's Batch-worded events, and resubmitted through the local Batch endpoint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import start_local
from tests.e2e.test_local_mode import READS_A, assert_stats, fastq, wait


@pytest.fixture(scope="module")
def reclaiming_lab(tmp_path_factory):
    """Every spot attempt is reclaimed; on-demand ones are not."""
    lab = start_local(tmp_path_factory.mktemp("reclaiming"), "--spot-interruptions", "1.0", "--seed", "5")
    yield lab
    assert lab.stop() == 0


def recovered(client, record: dict) -> dict:
    """The job LabBatch resubmitted `record` as: named on the first FAILED record a client sees."""
    assert record.get("recovered_by"), f"{record['job_id']} FAILED without its recovery: {record}"
    return client.get(record["recovered_by"])


def jobs_of(client, pipeline: str) -> set[str]:
    return {j["job_id"] for j in client.iter_jobs(pipeline=pipeline)}


def test_spot_job_all_reclaimed_is_recovered_once_on_demand_with_right_results(reclaiming_lab):
    client = reclaiming_lab.client()
    uri = reclaiming_lab.put("inputs", "recovery/a.fastq", fastq(READS_A))
    job = client.submit("brief-stats", [uri], queue="spot")

    failed = wait(client, job["job_id"], timeout=120)
    assert (failed["status"], failed["failure"]) == ("FAILED", "spot_reclaimed")
    assert len(failed["attempts"]) == 3 and all(a["exit_code"] is None for a in failed["attempts"])

    new = recovered(client, failed)
    assert (new["queue"], new["recovered_from"]) == ("on-demand", job["job_id"])
    assert new["recovery"]["kind"] == "spot_to_on_demand"
    new = wait(client, new["job_id"], timeout=120)
    assert new["status"] == "SUCCEEDED" and new["failure"] is None and len(new["attempts"]) == 1
    assert new["output_prefix"] != job["output_prefix"] and new["job_id"] in new["output_prefix"]
    assert_stats(reclaiming_lab.read_json(f"{new['output_prefix']}stats.json"), READS_A)
    assert client.get(job["job_id"])["recovered_by"] == new["job_id"]
    assert jobs_of(client, "brief-stats") == {job["job_id"], new["job_id"]}  # once, no more


def test_out_of_memory_is_recovered_once_with_half_as_much_memory_again(reclaiming_lab):
    client = reclaiming_lab.client()
    uri = reclaiming_lab.put("inputs", "recovery/hog.txt", b"x")
    job = client.submit("hog", [uri], queue="on-demand", parameters={"mib": "1300"})

    failed = wait(client, job["job_id"], timeout=120)
    assert (failed["status"], failed["failure"]) == ("FAILED", "out_of_memory")
    assert failed["attempts"][-1]["exit_code"] == 137
    assert "OutOfMemoryError: Container killed due to memory usage" in failed["attempts"][-1]["reason"]

    new = recovered(client, failed)
    assert (new["memory_mib"], new["queue"], new["recovery"]["kind"]) == (1536, "on-demand", "more_memory")
    new = wait(client, new["job_id"], timeout=120)
    assert new["status"] == "SUCCEEDED", new
    assert reclaiming_lab.read_json(f"{new['output_prefix']}held.json") == {"mib": 1312}


def test_out_of_memory_twice_is_not_recovered_a_second_time(reclaiming_lab):
    client = reclaiming_lab.client()
    uri = reclaiming_lab.put("inputs", "recovery/hog-more.txt", b"x")
    job = client.submit("hog", [uri], queue="on-demand", parameters={"mib": "1900"})

    new = recovered(client, wait(client, job["job_id"], timeout=120))
    again = wait(client, new["job_id"], timeout=120)

    assert (again["failure"], again["memory_mib"]) == ("out_of_memory", 1536)
    assert again["recovery_refused"]["kind"] == "more_memory" and again["recovered_by"] is None
    assert {job["job_id"], new["job_id"]} <= jobs_of(client, "hog")
    assert not [j for j in client.iter_jobs(pipeline="hog") if j.get("recovered_from") == new["job_id"]]


def test_application_failure_is_classified_and_never_resubmitted(reclaiming_lab):
    client = reclaiming_lab.client()
    uri = reclaiming_lab.put("inputs", "recovery/corrupt.fastq", b"@r1\nACGT\n+\nII\n")
    before = jobs_of(client, "fastq-stats")
    job = client.submit("fastq-stats", [uri], queue="on-demand")

    failed = wait(client, job["job_id"], timeout=120)

    assert (failed["status"], failed["failure"]) == ("FAILED", "application")
    assert failed["attempts"][-1]["exit_code"] not in (0, None)
    time.sleep(1.0)  # what a resubmission would need to show up
    failed = client.get(job["job_id"])
    assert failed["recovered_by"] is None and failed["recovery_refused"] is None
    assert jobs_of(client, "fastq-stats") - before == {job["job_id"]}


def test_a_cancelled_job_is_classified_cancelled_and_not_resubmitted(reclaiming_lab):
    client = reclaiming_lab.client()
    uri = reclaiming_lab.put("inputs", "recovery/slow.txt", b"x")
    job = client.submit("slow", [uri], queue="on-demand")
    deadline = time.monotonic() + 60
    while client.get(job["job_id"])["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    scratch = Path(reclaiming_lab.info["scratch"]) / "labbatch"
    while not any(scratch.glob(f"{job['job_id']}*")):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    client.cancel(job["job_id"])
    failed = wait(client, job["job_id"], timeout=60)

    assert (failed["status"], failed["failure"]) == ("FAILED", "cancelled")
    assert failed["recovered_by"] is None and jobs_of(client, "slow") == {job["job_id"]}


def test_labbatch_wait_follows_the_original_job_to_its_successful_recovery(reclaiming_lab):
    client = reclaiming_lab.client()
    uri = reclaiming_lab.put("inputs", "recovery/followed.fastq", fastq(READS_A))
    job = client.submit("brief-stats", [uri], queue="spot")

    final = client.wait([job["job_id"]], timeout=180, interval=0.2)[job["job_id"]]

    assert final["status"] == "SUCCEEDED" and final["recovered_from"] == job["job_id"]
    assert_stats(reclaiming_lab.read_json(f"{final['output_prefix']}stats.json"), READS_A)
