"""Failure classes and recovery in the status updater, on recorded Batch event shapes
(tests/batch_events/failed_jobs.json: one final FAILED event per case, with the runner
manifest the case needs) and a moto Batch that records the resubmissions."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from labbatch_contract.settings import PoolSettings
from tests.api_lab import (ON_DEMAND_QUEUE, READS, RESULTS_BUCKET, SETTINGS, SPOT_QUEUE, aws_error, batch_environment,
                     capture_calls, inject)

EVENTS = Path(__file__).resolve().parents[1] / "batch_events"
CASES = json.loads((EVENTS / "failed_jobs.json").read_text())
API_CANCEL = "Cancelled through the LabBatch API by arn:aws:sts::123456789012:assumed-role/LabScientist/alice"


def submitted(lab, **body) -> dict:
    answer = lab.submit({"pipeline": "fastq-stats", "inputs": [READS], **body})
    assert answer.status == 202, answer.body
    return answer.body


def final_event(lab, case: str, job: dict) -> dict:
    """The recorded FAILED event of `case`, for the Batch job the API really submitted."""
    event = copy.deepcopy(CASES[case]["event"])
    text = json.dumps(event).replace("{{JOB_ID}}", job["job_id"]).replace("{{BATCH_JOB_ID}}", job["batch_job_id"])
    event = json.loads(text)
    [described] = lab.batch.describe_jobs(jobs=[job["batch_job_id"]])["jobs"]
    event["detail"]["container"]["environment"] = described["container"]["environment"]
    event["detail"]["jobQueue"] = described["jobQueue"]
    return event


def put_manifest(lab, case: str, job: dict) -> None:
    manifest = CASES[case].get("manifest")
    if manifest is None:
        return
    text = json.dumps(manifest).replace("{{JOB_ID}}", job["job_id"])
    key = f"jobs/{job['job_id']}/manifest.json"
    lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=text.encode())


def view(lab, job_id: str) -> dict:
    answer = lab.call("GET", f"/jobs/{job_id}")
    assert answer.status == 200, answer.body
    return answer.body


def fail(lab, job: dict, case: str) -> dict:
    if CASES[case].get("cancel"):
        from labbatch_api.ledger import JobLedger

        JobLedger(lab.dynamodb, SETTINGS["table"]).record_cancel(job["job_id"], {
            "requested_at": "2026-11-02T10:10:00.000000Z", "requested_by": "arn:aws:iam::123456789012:user/bob",
            "action": "terminate"})
    put_manifest(lab, case, job)
    return lab.deliver(final_event(lab, case, job))


# --- failure classes ------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_every_recorded_failure_gets_its_class(lab, case):
    job = submitted(lab)

    answer = fail(lab, job, case)

    assert answer["applied"] and answer["failure"] == CASES[case]["expected"]
    record = view(lab, job["job_id"])
    assert record["status"] == "FAILED"
    assert record["failure"] == CASES[case]["expected"]


def test_the_recorded_cases_cover_every_class():
    from labbatch_status.failure_classes import FAILURE_CLASSES

    assert {case["expected"] for case in CASES.values()} == set(FAILURE_CLASSES)


def test_an_api_cancel_is_recognised_even_before_the_record_says_so(lab):
    # DELETE records `cancel` after Batch answered, so the FAILED event may come first.
    job = submitted(lab)
    assert fail(lab, job, "terminated_through_the_api")["failure"] == "cancelled"
    assert view(lab, job["job_id"])["recovered_by"] is None


@pytest.mark.parametrize("reason,expected", [
    ("Host EC2 (instance i-0123456789abcdef0) terminated.", "spot_reclaimed"),
    ("Job attempt duration exceeded timeout", "timeout"),
    ("Essential container in task exited", "application"),
])
def test_classifier_reads_the_attempts_own_reason_first(reason, expected):
    from labbatch_status.failure_classes import AttemptEvidence, classify

    attempts = [AttemptEvidence(None if "Host" in reason else 1, None, reason)]
    assert classify(status_reason="Essential container in task exited", attempts=attempts) == expected


def test_a_manifest_of_another_attempt_or_exit_code_is_not_evidence():
    from labbatch_status.failure_classes import AttemptEvidence, classify

    manifest = {"attempt": 1, "exit_code": 66, "failed_phase": "stage_in"}
    two = [AttemptEvidence(66, None, "x"), AttemptEvidence(66, None, "x")]
    assert classify(status_reason=None, attempts=two[:1], manifest=manifest) == "out_of_scratch"
    assert classify(status_reason=None, attempts=two, manifest=manifest) == "application"
    assert classify(status_reason=None, attempts=[AttemptEvidence(1, None, "x")], manifest=manifest) == "application"


def test_local_mode_words_classify_as_batchs_do():
    """labbatch_contract/batch_reasons.py is what the local executor says; it must classify alike."""
    from labbatch_status.failure_classes import AttemptEvidence, classify

    from labbatch_contract import batch_reasons as words

    def one(exit_code, reason, status_reason, job_reason=None):
        return classify(status_reason=job_reason or status_reason,
                        attempts=[AttemptEvidence(exit_code, reason, status_reason)])

    assert one(None, None, words.host_terminated("i-0abc")) == "spot_reclaimed"
    assert one(137, words.OUT_OF_MEMORY, words.CONTAINER_EXITED) == "out_of_memory"
    assert one(143, None, words.TIMEOUT) == "timeout"
    assert one(None, words.executable_not_found("nope"), words.TASK_FAILED_TO_START) == "infrastructure"
    assert one(None, words.cannot_start("tool", "permission denied"), words.TASK_FAILED_TO_START) == "infrastructure"
    assert one(2, None, words.CONTAINER_EXITED) == "application"
    assert classify(status_reason=words.cancelled_by_time_limit(
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", 600), attempts=[]) == "cancelled"
    assert classify(status_reason=words.BLOCKED_BY_CE_MAX, attempts=[]) == "cancelled"


def test_array_children_carry_their_class_and_the_parent_the_most_common(lab):
    from labbatch_status.failure_classes import classify_array_parent

    job = lab.submit({"pipeline": "fastq-stats", "samples": [
        {"name": f"s{i}", "inputs": [READS]} for i in range(3)]}).body
    job_id, batch_job_id = job["job_id"], job["batch_job_id"]
    events = json.loads((EVENTS / "array_job_three_samples.json").read_text().replace("{{JOB_ID}}", job_id)
                        .replace("{{BATCH_JOB_ID}}", batch_job_id))
    child = next(e for e in events if e["detail"].get("arrayProperties", {}).get("index") == 0
                 and e["detail"]["status"] == "RUNNING")
    for index, (exit_code, reason) in enumerate([(137, "OutOfMemoryError: Container killed due to memory usage"),
                                                 (137, "OutOfMemoryError: Container killed due to memory usage"),
                                                 (1, None)]):
        event = copy.deepcopy(child)
        event["detail"]["jobId"] = f"{batch_job_id}:{index}"
        event["detail"]["arrayProperties"]["index"] = index
        event["detail"]["status"] = "FAILED"
        event["detail"]["statusReason"] = "Essential container in task exited"
        event["detail"]["attempts"] = [{"container": {"exitCode": exit_code, "reason": reason},
                                        "statusReason": "Essential container in task exited"}]
        assert lab.deliver(event)["failure"] == ("application" if exit_code == 1 else "out_of_memory")
    parent = next(e for e in events if "arrayProperties" in e["detail"] and "index" not in e["detail"]
                  ["arrayProperties"] and e["detail"]["status"] in ("SUCCEEDED", "FAILED"))
    parent = copy.deepcopy(parent)
    parent["detail"]["status"], parent["detail"]["statusReason"] = "FAILED", "Array Child Job failed"
    parent["detail"]["arrayProperties"]["statusSummary"] = {"FAILED": 3}

    assert lab.deliver(parent)["failure"] == "out_of_memory"
    record = view(lab, job_id)
    assert record["failure"] == "out_of_memory" and record["recovered_by"] is None  # arrays are not resubmitted
    items = {i["job_id"]: i for i in lab.ledger_items()}
    assert items[f"{job_id}/2"]["failure"] == "application"
    assert items[job_id]["child_failures"] == {"out_of_memory": 2, "application": 1}
    assert classify_array_parent(status_reason=API_CANCEL, cancel_requested=False, child_failures={}) == "cancelled"


# --- recovery -------------------------------------------------------------------------------

def batch_job(lab, batch_job_id: str) -> dict:
    [job] = lab.batch.describe_jobs(jobs=[batch_job_id])["jobs"]
    return job


def as_submitted(record: dict) -> dict:
    return {"job_id": record["job_id"], "batch_job_id": record["batch_job_id"]}


def test_all_spot_attempts_reclaimed_resubmits_once_on_demand(lab):
    job = submitted(lab, parameters={}, name="reclaimed-run")

    answer = fail(lab, job, "spot_reclaimed_every_attempt")

    assert answer["recovery"]["kind"] == "spot_to_on_demand" and answer["recovery"]["submitted"]
    old, new = view(lab, job["job_id"]), view(lab, answer["recovery"]["job_id"])
    assert old["failure"] == "spot_reclaimed" and old["recovered_by"] == new["job_id"]
    assert new["recovered_from"] == job["job_id"]
    assert new["recovery"]["kind"] == "spot_to_on_demand"
    assert new["recovery"]["original_job_id"] == job["job_id"]
    assert "all 3 attempts on spot were reclaimed" in new["recovery"]["reason"]
    assert (new["status"], new["queue"]) == ("SUBMITTED", "on-demand")
    assert (new["vcpus"], new["memory_mib"], new["inputs"], new["pipeline"]) == (1, 2048, [READS], "fastq-stats")
    assert new["output_prefix"] == f"s3://{RESULTS_BUCKET}/jobs/{new['job_id']}/" != old["output_prefix"]
    assert new["name"] == "reclaimed-run" and new["submitted_by"] == old["submitted_by"]
    described = batch_job(lab, new["batch_job_id"])
    assert described["jobQueue"].endswith(ON_DEMAND_QUEUE)
    env, old_env = batch_environment(described), batch_environment(batch_job(lab, job["batch_job_id"]))
    assert env["LABBATCH_JOB_ID"] == new["job_id"]
    assert env["LABBATCH_OUTPUT_PREFIX"] == new["output_prefix"]
    assert (env["LABBATCH_INPUTS"], env["LABBATCH_PARAMETERS"]) == (old_env["LABBATCH_INPUTS"],
                                                                     old_env["LABBATCH_PARAMETERS"])
    assert described["tags"]["labbatch:lab"] == "example"
    assert described["jobName"] == batch_job(lab, job["batch_job_id"])["jobName"]


def test_a_redelivered_failure_recovers_nothing_more(lab):
    job = submitted(lab)
    fail(lab, job, "spot_reclaimed_every_attempt")
    before = len(lab.batch_jobs())

    again = lab.deliver(final_event(lab, "spot_reclaimed_every_attempt", job))

    assert not again["applied"] and "recovery" not in again
    assert len(lab.batch_jobs()) == before and len(lab.job_records()) == 2


def test_each_kind_of_recovery_happens_once_per_original_job(lab):
    job = submitted(lab)
    first = fail(lab, job, "spot_reclaimed_every_attempt")["recovery"]
    recovered = view(lab, first["job_id"])
    # On demand and still "reclaimed" (a recorded reclaim for the new job): not a second time.
    refused = lab.deliver(final_event(lab, "spot_reclaimed_every_attempt", as_submitted(recovered)))

    assert refused["recovery"]["refused"]["kind"] == "spot_to_on_demand"
    record = view(lab, recovered["job_id"])
    assert record["recovered_by"] is None and "only once" in record["recovery_refused"]["reason"]
    assert len(lab.job_records()) == 2


def test_out_of_memory_is_resubmitted_with_half_as_much_again_rounded_to_256(lab):
    job = submitted(lab, memory_mib=1000)
    from labbatch_status import handler as job_status
    calls = capture_calls(job_status.other_clients()[1], "SubmitJob")

    answer = fail(lab, job, "out_of_memory")

    new = view(lab, answer["recovery"]["job_id"])
    assert (new["memory_mib"], new["queue"], new["recovery"]["kind"]) == (1536, "spot", "more_memory")
    assert "killed for memory at 1,000 MiB" in new["recovery"]["reason"]
    requirements = {r["type"]: r["value"] for r in calls[0]["containerOverrides"]["resourceRequirements"]}
    assert requirements["MEMORY"] == "1536" and requirements["VCPU"] == "1"
    assert batch_job(lab, new["batch_job_id"])["jobQueue"].endswith(SPOT_QUEUE)
    # Killed for memory again: no third size.
    again = lab.deliver(final_event(lab, "out_of_memory", as_submitted(new)))
    assert again["recovery"]["refused"]["kind"] == "more_memory"
    assert len(lab.job_records()) == 2


def test_more_memory_above_the_labs_limit_is_refused_and_recorded(lab):
    limit = SETTINGS["limits"]["max_memory_mib"]
    job = submitted(lab, memory_mib=limit - 100)  # 1.5x is far over

    answer = fail(lab, job, "out_of_memory")

    assert answer["recovery"]["refused"]["kind"] == "more_memory"
    record = view(lab, job["job_id"])
    assert "limits.max_memory_mib" in record["recovery_refused"]["reason"]
    assert f"{limit:,} MiB" in record["recovery_refused"]["reason"]
    assert record["recovered_by"] is None and len(lab.job_records()) == 1 and len(lab.batch_jobs()) == 1


def test_more_memory_refused_at_a_local_machines_limit_says_it_is_the_machines():
    from labbatch_status import recovery
    pool = PoolSettings(queues={"on-demand": "q"}, queue_max_vcpus={"on-demand": 2}, scratch_gib=100,
                        limits={"max_vcpus": 2, "max_memory_mib": 2500, "lab_max_memory_mib": 30_000})
    refusal = recovery.plan({"vcpus": 1, "memory_mib": 2048, "queue": "on-demand", "pipeline": "hog"},
                            "out_of_memory", enabled={}, pools={"default": pool}, pool="default",
                            status_reason=None, attempts=1)

    assert isinstance(refusal, recovery.Refusal)
    assert "this local machine can give a job" in refusal.reason and "30,000 MiB" in refusal.reason
    assert "this lab's" not in refusal.reason


def test_more_memory_exactly_at_the_limit_is_resubmitted(lab):
    limit = SETTINGS["limits"]["max_memory_mib"]
    from labbatch_status.recovery import more_memory

    memory = max(m for m in range(limit // 2, limit) if more_memory(m) <= limit)
    job = submitted(lab, memory_mib=memory)

    answer = fail(lab, job, "out_of_memory")

    assert answer["recovery"]["submitted"]
    assert view(lab, answer["recovery"]["job_id"])["memory_mib"] == more_memory(memory) <= limit


def test_recoveries_of_different_kinds_chain_each_once(lab):
    job = submitted(lab)
    on_demand = view(lab, fail(lab, job, "spot_reclaimed_every_attempt")["recovery"]["job_id"])

    bigger = lab.deliver(final_event(lab, "out_of_memory", as_submitted(on_demand)))["recovery"]

    record = view(lab, bigger["job_id"])
    assert (record["queue"], record["memory_mib"]) == ("on-demand", 3072)
    assert record["recovery"]["kinds_used"] == ["spot_to_on_demand", "more_memory"]
    assert record["recovery"]["original_job_id"] == job["job_id"] and record["recovered_from"] == on_demand["job_id"]


def test_infrastructure_failures_are_resubmitted_once(lab):
    job = submitted(lab)

    first = fail(lab, job, "cannot_pull_container")["recovery"]
    new = view(lab, first["job_id"])
    assert (new["recovery"]["kind"], new["queue"], new["memory_mib"]) == ("infrastructure_retry", "spot", 2048)
    assert "CannotPullContainerError" in new["recovery"]["reason"]
    second = lab.deliver(final_event(lab, "resource_initialization", as_submitted(new)))
    assert second["recovery"]["refused"]["kind"] == "infrastructure_retry"
    assert len(lab.job_records()) == 2


@pytest.mark.parametrize("case", ["tool_exit_one", "timeout", "terminated_through_the_api",
                                  "cancelled_by_the_queues_time_limit", "not_enough_scratch_per_manifest"])
def test_other_failures_are_never_resubmitted(lab, case):
    job = submitted(lab)

    answer = fail(lab, job, case)

    assert "recovery" not in answer
    record = view(lab, job["job_id"])
    assert record["recovered_by"] is None and record["recovery_refused"] is None
    assert len(lab.job_records()) == 1 and len(lab.batch_jobs()) == 1


def test_a_pipeline_can_turn_a_recovery_off(lab, monkeypatch):
    from labbatch_status import handler as job_status
    settings = copy.deepcopy(SETTINGS)
    settings["pipelines"]["fastq-stats"]["recovery"] = {"spot_to_on_demand": False, "more_memory": True,
                                                        "infrastructure_retry": True}
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_status.status_ledger.cache_clear()
    job = submitted(lab)

    answer = fail(lab, job, "spot_reclaimed_every_attempt")

    assert answer["recovery"]["refused"]["reason"] == "recovery.spot_to_on_demand is off for pipeline fastq-stats"
    assert len(lab.job_records()) == 1


def test_a_one_sample_job_keeps_its_samples_segment(lab):
    job = lab.submit({"pipeline": "fastq-stats", "samples": [{"name": "only", "inputs": [READS]}]}).body

    new = view(lab, fail(lab, job, "cannot_start_container")["recovery"]["job_id"])

    env = batch_environment(batch_job(lab, new["batch_job_id"]))
    assert env["LABBATCH_OUTPUT_PREFIX"] == f"{new['output_prefix']}only/"


def test_a_refused_submission_is_recorded_on_the_new_job(lab):
    from labbatch_status import handler as job_status
    job = submitted(lab)
    _, batch = job_status.other_clients()
    inject(batch, "SubmitJob", [aws_error("ClientException", 400, message="job queue is disabled")])

    answer = fail(lab, job, "spot_reclaimed_every_attempt")

    assert answer["recovery"]["submitted"] is False
    new = view(lab, answer["recovery"]["job_id"])
    assert (new["status"], new["failure"]) == ("FAILED", "infrastructure")
    assert new["submit_error"]["code"] == "ClientException"
    assert view(lab, job["job_id"])["recovered_by"] == new["job_id"]


@pytest.mark.parametrize("case, memory_below_limit, decision", [
    ("cannot_pull_container", None, "recovered_by"),
    ("out_of_memory", 100, "recovery_refused"),  # 1.5x is over the lab's limit
])
def test_failed_is_never_seen_without_its_class_and_recovery_decision(lab, case, memory_below_limit, decision):
    """The FAILED write carries the class and the decision; the job it names already exists."""
    from labbatch_status import handler as job_status
    body = {} if memory_below_limit is None else {"memory_mib": SETTINGS["limits"]["max_memory_mib"] - memory_below_limit}
    job = submitted(lab, **body)
    ledger = job_status.status_ledger()[1]
    original_apply = ledger.apply
    seen = []

    def watched(update, **kwargs):
        seen.append(view(lab, job["job_id"]))
        applied = original_apply(update, **kwargs)
        seen.append(view(lab, job["job_id"]))
        return applied

    ledger.apply = watched
    try:
        fail(lab, job, case)
    finally:
        ledger.apply = original_apply

    before, after = seen
    assert before["status"] != "FAILED"
    assert after["status"] == "FAILED" and after["failure"] == CASES[case]["expected"]
    assert after[decision]
    if decision == "recovered_by":
        assert view(lab, after["recovered_by"])["recovered_from"] == job["job_id"]


def test_recovery_resumes_where_a_crashed_delivery_stopped(lab):
    """The first delivery wrote the new record and then died before the FAILED write: nobody saw
    the job FAILED yet, and EventBridge's redelivery finishes the recovery under the same id."""
    from labbatch_status import handler as job_status
    job = submitted(lab)
    ledger = job_status.status_ledger()[1]
    original_apply = ledger.apply

    def crash(update, **kwargs):
        raise RuntimeError("Lambda ran out of time")

    ledger.apply = crash
    try:
        with pytest.raises(RuntimeError):
            fail(lab, job, "cannot_pull_container")
    finally:
        ledger.apply = original_apply
    assert view(lab, job["job_id"])["status"] != "FAILED"
    [written] = [r for r in lab.job_records() if r.get("recovered_from") == job["job_id"]]

    answer = lab.deliver(final_event(lab, "cannot_pull_container", job))

    assert answer["recovery"] == {"kind": "infrastructure_retry", "job_id": written["job_id"], "submitted": True}
    assert view(lab, job["job_id"])["recovered_by"] == written["job_id"]
    assert view(lab, written["job_id"])["status"] == "SUBMITTED"
    assert len(lab.job_records()) == 2


def test_a_stale_failure_leaves_no_recovery_record_behind(lab):
    from labbatch_status import handler as job_status
    job = submitted(lab)
    ledger = job_status.status_ledger()[1]
    original_apply = ledger.apply
    ledger.apply = lambda update, **kwargs: False  # another event got there first, deciding nothing
    try:
        answer = fail(lab, job, "cannot_pull_container")
    finally:
        ledger.apply = original_apply

    assert not answer["applied"] and "recovery" not in answer
    assert [r["job_id"] for r in lab.job_records()] == [job["job_id"]]


def test_submit_request_is_what_the_api_sends(lab):
    from labbatch_status import handler as job_status
    job = submitted(lab, parameters={})
    calls = capture_calls(job_status.other_clients()[1], "SubmitJob")
    api_request = batch_job(lab, job["batch_job_id"])

    fail(lab, job, "cannot_pull_container")

    [call] = calls
    assert set(call) == {"jobName", "jobQueue", "jobDefinition", "containerOverrides", "tags"}
    assert [e["name"] for e in call["containerOverrides"]["environment"]] == [
        "LABBATCH_JOB_ID", "LABBATCH_INPUTS", "LABBATCH_PARAMETERS", "LABBATCH_OUTPUT_PREFIX"]
    assert call["jobDefinition"] == SETTINGS["pipelines"]["fastq-stats"]["job_definition"]
    assert api_request["jobDefinition"].split("/")[-1].startswith(call["jobDefinition"])


# --- the recovery settings, from lab config to both Lambdas -------------------------------

def test_recovery_is_on_by_default_and_costs_the_settings_nothing_then():
    from labbatch.lab.config import Pipeline

    pipeline = Pipeline(image="demo", command=["tool"])
    assert pipeline.recovery.model_dump() == {"spot_to_on_demand": True, "more_memory": True,
                                              "infrastructure_retry": True}
    assert all("recovery" not in p for p in SETTINGS["pipelines"].values())


def test_a_pipelines_recovery_switches_reach_both_lambdas(monkeypatch):
    from labbatch_api import runtime as api_runtime
    from labbatch_status import handler as job_status
    import yaml

    from labbatch.lab.api_settings import check_size, handler_settings
    from labbatch.lab.config import Lab

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "labs" / "example.yaml").read_text())
    data["pipelines"]["fastq-stats"]["recovery"] = {"more_memory": False}
    lab = Lab.model_validate(data)
    settings = handler_settings(lab, "123456789012", "us-east-1")
    # Only what differs from the default travels, to spare Lambda's 4 KB environment.
    assert settings["pipelines"]["fastq-stats"]["recovery"] == {"more_memory": False}
    assert "recovery" not in settings["pipelines"]["align"]
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    # Both functions read the one settings model of labbatch_contract.
    assert api_runtime.load_settings is job_status.load_settings
    status = job_status.load_settings()
    assert status.pipelines["fastq-stats"].recovery.more_memory is False
    assert status.pipelines["fastq-stats"].recovery.spot_to_on_demand is True
    assert status.pipelines["align"].recovery.more_memory is True
    assert status.limits.max_memory_mib == settings["limits"]["max_memory_mib"]
    assert check_size(lab) < 4096 - 512


def test_an_unknown_recovery_switch_is_refused_at_synth():
    from pydantic import ValidationError

    from labbatch.lab.config import Pipeline

    with pytest.raises(ValidationError, match="more_memroy"):
        Pipeline(image="demo", command=["tool"], recovery={"more_memroy": False})


def test_labbatch_status_shows_the_class_and_the_links():
    from rich.console import Console

    from labbatch.client.tables import job_table as _job_table, jobs_table

    job = {"job_id": "j-1", "pipeline": "hog", "queue": "on-demand", "status": "FAILED", "failure": "out_of_memory",
           "recovered_from": "j-0", "recovery": {"kind": "more_memory", "reason": "killed for memory at 1,024 MiB"},
           "recovery_refused": {"kind": "more_memory", "reason": "already recovered once by more_memory"},
           "vcpus": 1, "memory_mib": 1536}
    console = Console(record=True, width=200)
    console.print(_job_table(job))
    console.print(jobs_table([job]))
    text = console.export_text()
    assert "failure" in text and "out_of_memory" in text
    assert "j-0 (more_memory: killed for memory at 1,024 MiB)" in text
    assert "already recovered once by more_memory" in text
    assert "FAILED (out_of_memory)" in text


def _oom_unsaid(lab, job: dict) -> dict:
    """The recorded OOM failure as Docker 20.10 on cgroup v1 reports it at times: exit 137, no
    OutOfMemoryError reason anywhere."""
    event = final_event(lab, "out_of_memory", job)
    detail = event["detail"]
    detail["container"].pop("reason", None)
    for attempt in detail["attempts"]:
        attempt["container"].pop("reason", None)
    return event


def _manifest(lab, job: dict, oom_killed) -> None:
    manifest = {"job_id": job["job_id"], "attempt": 1, "exit_code": 137, "status": "failed", "failed_phase": "run",
                "tool": {"argv": ["tail", "/dev/zero"], "exit_code": 137, "signal": "SIGKILL", "oom_killed": oom_killed}}
    lab.s3.put_object(Bucket=RESULTS_BUCKET, Key=f"jobs/{job['job_id']}/manifest.json", Body=json.dumps(manifest).encode())


@pytest.mark.parametrize(("oom_killed", "expected"), [(True, "out_of_memory"), (False, "application"),
                                                        (None, "application")])
def test_a_sigkill_the_runner_saw_the_oom_killer_send_is_out_of_memory(lab, oom_killed, expected):
    job = submitted(lab, memory_mib=1000)
    _manifest(lab, job, oom_killed)

    answer = lab.deliver(_oom_unsaid(lab, job))

    assert view(lab, job["job_id"])["failure"] == expected
    if expected == "out_of_memory":
        assert view(lab, answer["recovery"]["job_id"])["memory_mib"] == 1536  # and more memory follows
    else:
        assert "recovery" not in answer or not answer["recovery"].get("job_id")
