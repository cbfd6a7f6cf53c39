"""Local Batch: how attempts fail, in Batch's words, and what the retry strategy then does."""

from __future__ import annotations

import re

from test_batch_helpers import (LAB_RETRY, ON_DEMAND_QUEUE, SPOT_QUEUE, definition, env_override, local_batch,
                                wait_for)

HOST_TERMINATED = re.compile(r"^Host EC2 \(instance i-[0-9a-f]{17}\) terminated\.$")
PRINT_ATTEMPT_AND_EXIT = ("import os, sys\n"
                          "print('attempt', os.environ['AWS_BATCH_JOB_ATTEMPT'])\n"
                          "sys.exit(int(os.environ['EXIT_CODE']))\n")


def test_retry_rule_retries_matching_exit_codes_and_exit_rule_stops_the_rest(tmp_path):
    retry = {"attempts": 3, "evaluateOnExit": [{"action": "RETRY", "onExitCode": "7*"},
                                                {"action": "exit", "onReason": "*"}]}
    with local_batch(tmp_path, [definition("d", PRINT_ATTEMPT_AND_EXIT, retry=retry)]) as (_, client, recorder):
        retried = client.submit_job(jobName="r", jobQueue=SPOT_QUEUE, jobDefinition="d",
                                    containerOverrides=env_override(EXIT_CODE="71"))["jobId"]
        stopped = client.submit_job(jobName="s", jobQueue=SPOT_QUEUE, jobDefinition="d",
                                    containerOverrides=env_override(EXIT_CODE="5"))["jobId"]
        retried_job, stopped_job = wait_for(client, retried), wait_for(client, stopped)

    assert retried_job["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in retried_job["attempts"]] == [71, 71, 71]
    assert [recorder.logs[a["container"]["logStreamName"]] for a in retried_job["attempts"]] == \
        [["attempt 1"], ["attempt 2"], ["attempt 3"]]
    assert recorder.statuses(retried) == ["SUBMITTED", "RUNNABLE"] + ["STARTING", "RUNNING", "RUNNABLE"] * 2 + \
        ["STARTING", "RUNNING", "FAILED"]
    assert [a["container"]["exitCode"] for a in stopped_job["attempts"]] == [5]


def test_no_matching_rule_retries_while_attempts_remain_and_a_retry_can_succeed(tmp_path):
    code = ("import os, sys\n"
            "marker = os.path.join(os.environ['LABBATCH_SCRATCH_DIR'], 'tried-' + os.environ['AWS_BATCH_JOB_ID'])\n"
            "if not os.path.exists(marker):\n"
            "    open(marker, 'w').close(); sys.exit(1)\n")
    only_reclaims = {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onStatusReason": "Nothing like this*"}]}
    with local_batch(tmp_path, [definition("flaky", code, retry=only_reclaims)]) as (_, client, _recorder):
        job_id = client.submit_job(jobName="f", jobQueue=SPOT_QUEUE, jobDefinition="flaky")["jobId"]
        job = wait_for(client, job_id)

    assert job["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 0]


def test_retry_strategy_given_at_submit_replaces_the_definitions(tmp_path):
    with local_batch(tmp_path, [definition("d", PRINT_ATTEMPT_AND_EXIT)]) as (_, client, _recorder):
        job_id = client.submit_job(jobName="o", jobQueue=SPOT_QUEUE, jobDefinition="d", retryStrategy={"attempts": 2},
                                   containerOverrides=env_override(EXIT_CODE="1"))["jobId"]
        job = wait_for(client, job_id)

    assert len(job["attempts"]) == 2 and job["retryStrategy"] == {"attempts": 2}


def test_every_spot_attempt_reclaimed_at_rate_one_while_on_demand_runs_untouched(tmp_path):
    code = "import time; time.sleep(0.3)"
    with local_batch(tmp_path, [definition("d", code, retry=LAB_RETRY)], spot_interruption_rate=1.0,
                     random_seed=7) as (_, client, recorder):
        spot = client.submit_job(jobName="spot", jobQueue=SPOT_QUEUE, jobDefinition="d")["jobId"]
        on_demand = client.submit_job(jobName="od", jobQueue=ON_DEMAND_QUEUE, jobDefinition="d")["jobId"]
        spot_job, on_demand_job = wait_for(client, spot), wait_for(client, on_demand)

    assert spot_job["status"] == "FAILED"
    assert len(spot_job["attempts"]) == 3
    for attempt in spot_job["attempts"]:
        assert HOST_TERMINATED.match(attempt["statusReason"])
        assert "exitCode" not in attempt["container"]
    assert HOST_TERMINATED.match(spot_job["statusReason"])
    assert on_demand_job["status"] == "SUCCEEDED" and len(on_demand_job["attempts"]) == 1


def test_reclaimed_spot_jobs_are_retried_and_still_succeed_at_a_lower_rate(tmp_path):
    code = "import time; time.sleep(0.2)"
    retry = {**LAB_RETRY, "attempts": 10}
    with local_batch(tmp_path, [definition("d", code, retry=retry)], spot_interruption_rate=0.5, random_seed=11,
                     spot_reclaim_within_seconds=0.4) as (_, client, _recorder):
        ids = [client.submit_job(jobName=f"s{i}", jobQueue=SPOT_QUEUE, jobDefinition="d")["jobId"] for i in range(4)]
        jobs = [wait_for(client, job_id) for job_id in ids]

    assert [job["status"] for job in jobs] == ["SUCCEEDED"] * 4
    reclaimed = [a for job in jobs for a in job["attempts"] if HOST_TERMINATED.match(a["statusReason"])]
    assert reclaimed, "seed 11 at rate 0.5 reclaims some attempts"
    assert all(job["attempts"][-1]["container"]["exitCode"] == 0 for job in jobs)


def test_attempt_over_its_timeout_fails_and_is_not_retried(tmp_path):
    with local_batch(tmp_path, [definition("slow", "import time; time.sleep(300)", timeout_seconds=1,
                                           retry={"attempts": 3})]) as (_, client, _recorder):
        job_id = client.submit_job(jobName="t", jobQueue=SPOT_QUEUE, jobDefinition="slow")["jobId"]
        job = wait_for(client, job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    [attempt] = job["attempts"]
    assert attempt["statusReason"] == "Job attempt duration exceeded timeout"
    assert attempt["container"]["exitCode"] == 143  # SIGTERM ended it within the grace period
    assert 900 <= attempt["stoppedAt"] - attempt["startedAt"] < 5000


def test_missing_executable_fails_to_start_with_no_exit_code(tmp_path):
    with local_batch(tmp_path, [{"name": "missing", "command": ["labbatch-no-such-tool", "--help"], "retry": LAB_RETRY}]) \
            as (_, client, recorder):
        job_id = client.submit_job(jobName="m", jobQueue=SPOT_QUEUE, jobDefinition="missing")["jobId"]
        job = wait_for(client, job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Task failed to start"
    [attempt] = job["attempts"]
    reason = attempt["container"]["reason"]
    assert reason.startswith("CannotStartContainerError: ")
    assert reason.endswith("executable file not found in $PATH: labbatch-no-such-tool")
    assert "exitCode" not in attempt["container"] and "startedAt" not in attempt
    assert recorder.statuses(job_id) == ["SUBMITTED", "RUNNABLE", "STARTING", "FAILED"]


def test_attempt_over_its_memory_is_killed_as_out_of_memory(tmp_path):
    grows = ("import time\n"
             "chunks = []\n"
             "while True:\n"
             "    chunks.append(b'x' * (8 << 20))\n"
             "    time.sleep(0.01)\n")
    with local_batch(tmp_path, [definition("hungry", grows, memory_mib=64, retry=LAB_RETRY)]) as (_, client, _recorder):
        job_id = client.submit_job(jobName="h", jobQueue=SPOT_QUEUE, jobDefinition="hungry")["jobId"]
        job = wait_for(client, job_id)

    assert job["status"] == "FAILED"
    [attempt] = job["attempts"]  # EXIT onReason "*" catches the OOM reason
    assert attempt["container"]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert attempt["container"]["exitCode"] == 137
    assert job["container"]["reason"] == attempt["container"]["reason"]


def test_job_within_its_memory_is_left_alone(tmp_path):
    fits = "data = b'x' * (16 << 20); import time; time.sleep(0.5); print(len(data))"
    with local_batch(tmp_path, [definition("fits", fits, memory_mib=128)]) as (_, client, _recorder):
        job = wait_for(client, client.submit_job(jobName="f", jobQueue=SPOT_QUEUE, jobDefinition="fits")["jobId"])

    assert job["status"] == "SUCCEEDED"


def test_job_larger_than_the_machine_waits_with_batchs_reason_until_the_queue_time_limit_cancels_it(tmp_path):
    queues = [{"name": "q", "priority": 1, "compute_environments": ["ce"],
               "state_time_limit_actions": [{"reason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
                                             "max_time_seconds": 1}]}]
    with local_batch(tmp_path, [definition("d", "print('small')")], max_vcpus=2,
                     compute_environments=[{"name": "ce", "kind": "on-demand"}], queues=queues) as (_, client, _recorder):
        big = client.submit_job(jobName="big", jobQueue="q", jobDefinition="d", containerOverrides={
            "resourceRequirements": [{"type": "VCPU", "value": "4"}]})["jobId"]
        small = client.submit_job(jobName="small", jobQueue="q", jobDefinition="d")["jobId"]
        waiting = wait_for(client, big, ("RUNNABLE",))
        blocked_small = client.describe_jobs(jobs=[small])["jobs"][0]
        cancelled, small_job = wait_for(client, big), wait_for(client, small)
        queue = client.describe_job_queues(jobQueues=["q"])["jobQueues"][0]

    assert waiting["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - ")
    assert blocked_small["status"] == "RUNNABLE"  # the blocked head holds its queue, as in Batch
    assert cancelled["status"] == "FAILED" and cancelled["isCancelled"]
    assert cancelled["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - cancelled")
    assert small_job["status"] == "SUCCEEDED"
    assert queue["jobStateTimeLimitActions"] == [{"reason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
                                                  "state": "RUNNABLE", "maxTimeSeconds": 1, "action": "CANCEL"}]
