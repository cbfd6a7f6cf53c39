"""`labbatch why`: the API's explanation, or where the job is, in a few plain lines."""

from __future__ import annotations

from labbatch.client.why import why_text

JOB = {"job_id": "j-01abc", "pipeline": "fastq-stats", "output_prefix": "s3://results/jobs/j-01abc/"}


def test_a_waiting_job_prints_why_fix_and_batchs_words():
    job = {**JOB, "status": "RUNNABLE", "waiting_because": {
        "cause": "capacity_unavailable", "message": "EC2 has no capacity now for m6i.2xlarge.",
        "fix": "Wait, or resubmit with --queue on-demand.", "waiting_seconds": 754,
        "status_reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested "
                         "for instance type [m6i.2xlarge]"}}
    assert why_text(job).splitlines() == [
        "j-01abc is RUNNABLE, waiting for 12 min.",
        "Why: EC2 has no capacity now for m6i.2xlarge.",
        "Fix: Wait, or resubmit with --queue on-demand.",
        "Batch says: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested for "
        "instance type [m6i.2xlarge]",
    ]


def test_a_job_cancelled_by_the_time_limit_says_so():
    job = {**JOB, "status": "FAILED", "waiting_because": {
        "cause": "cancelled_by_time_limit", "message": "Batch cancelled this job: it waited in RUNNABLE longer than "
        "its job queue's time limit because EC2 had no capacity for the lab's instance types.", "fix": "Resubmit."}}
    lines = why_text(job).splitlines()
    assert lines[0] == "j-01abc is FAILED."
    assert lines[1].startswith("Why: Batch cancelled this job: it waited in RUNNABLE longer than")


def test_not_waiting_long_running_succeeded_and_failed():
    assert "reports nothing holding it back yet" in why_text({**JOB, "status": "RUNNABLE"})
    assert why_text({**JOB, "status": "RUNNING", "started_at": "2027-01-15T08:00:00Z"}) == \
        "j-01abc is RUNNING (started 2027-01-15T08:00:00Z); nothing is holding it back."
    assert why_text({**JOB, "status": "SUCCEEDED"}) == "j-01abc SUCCEEDED; outputs under s3://results/jobs/j-01abc/."
    failed = why_text({**JOB, "status": "FAILED", "failure": "out_of_memory",
                       "status_reason": "OutOfMemoryError: Container killed due to memory usage",
                       "attempts": [{"exit_code": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"}],
                       "log": {"group": "/labbatch/example/jobs", "stream": "fastq-stats/default/abc"}})
    assert failed.splitlines() == [
        "j-01abc FAILED (out_of_memory): OutOfMemoryError: Container killed due to memory usage",
        "Attempts: 1 (last: exit 137; OutOfMemoryError: Container killed due to memory usage)",
        "Log: /labbatch/example/jobs fastq-stats/default/abc",
    ]


def test_an_array_job_names_its_failed_children_and_says_how_many_more():
    from labbatch.client.why import child_why_text, failed_children_text

    child = {"job_id": "j-01abc", "index": 4, "sample": "s4", "status": "FAILED", "failure": "application",
             "reason": "tool 'fastq-stats' exited with 1: fastq-stats: error: Not a gzipped file", "exit_code": 1,
             "log": {"group": "/labbatch/example/jobs", "stream": "fastq-stats/default/abc"},
             "manifest": "s3://results/jobs/j-01abc/s4/manifest.json"}
    job = {**JOB, "status": "FAILED", "failure": "application", "status_reason": "Array Child Job failed",
           "array_size": 40, "child_failures": {"application": 11, "out_of_memory": 1},
           "failed_children": [child], "failed_children_next_token": "eyJhIjo0fQ"}
    assert (why_text(job) + failed_children_text(job)).splitlines() == [
        "j-01abc FAILED (application): Array Child Job failed",
        "Failed children: 12 of 40 (11 application, 1 out_of_memory)",
        "  4 s4 (application): tool 'fastq-stats' exited with 1: fastq-stats: error: Not a gzipped file",
        "      log: /labbatch/example/jobs fastq-stats/default/abc",
        "labbatch: 11 failed children not shown: labbatch status j-01abc:SAMPLE, or "
        "GET /jobs/j-01abc/children?status=FAILED",
    ]
    assert failed_children_text({**JOB, "status": "SUCCEEDED"}) == ""
    assert child_why_text(child).splitlines() == [
        "j-01abc:4 (sample s4) FAILED (application): tool 'fastq-stats' exited with 1: fastq-stats: error: "
        "Not a gzipped file",
        "Exit code: 1",
        "Log: /labbatch/example/jobs fastq-stats/default/abc",
        "Manifest: s3://results/jobs/j-01abc/s4/manifest.json",
    ]


def test_every_failed_attempt_shows_its_exit_code_and_the_tools_last_words():
    from labbatch.client.tables import job_table as _job_table

    job = {**JOB, "status": "FAILED", "failure": "application", "status_reason": "Essential container in task exited",
           "queue": "spot", "vcpus": 1, "memory_mib": 1024,
           "attempts": [{"exit_code": None, "reason": "Host EC2 (instance i-0abc) terminated."},
                        {"exit_code": 2, "reason": "Essential container in task exited",
                         "stderr_tail": "tool 'bwa' exited with 2: [E::bwa_idx_load] fail to locate the index"}]}
    lines = why_text(job).splitlines()
    assert lines[2:4] == [
        "  attempt 1: Host EC2 (instance i-0abc) terminated.",
        "  attempt 2: exit 2: tool 'bwa' exited with 2: [E::bwa_idx_load] fail to locate the index"]
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=400).print(_job_table(job))
    [row] = [line for line in out.getvalue().splitlines() if "exit 2:" in line]
    assert "tool 'bwa' exited with 2: [E::bwa_idx_load] fail to locate the index" in row
