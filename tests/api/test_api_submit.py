"""POST /jobs: what reaches Batch, S3 and the ledger for plain, one-sample and array jobs."""

from __future__ import annotations

import json
import re

import pytest
from tests.api_lab import (
    CALLER,
    SETTINGS,
    INPUTS_BUCKET,
    ON_DEMAND_QUEUE,
    READS,
    READS_B,
    REFERENCE,
    RESULTS_BUCKET,
    SPOT_QUEUE,
    api_clients,
    assert_ledger_agrees_with_batch,
    batch_environment,
    capture_calls,
)

JOB_ID = re.compile(r"^j-[0-9a-z]{26}$")


def test_plain_job_is_recorded_then_submitted_with_the_runner_contract(lab):
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = lab.submit({"pipeline": "fastq-stats", "inputs": [READS], "name": "QC run #1 (lane 2)"})

    assert answer.status == 202
    body = answer.body
    job_id = body["job_id"]
    assert JOB_ID.match(job_id)
    assert body["status"] == "SUBMITTED"
    assert body["output_prefix"] == f"s3://{RESULTS_BUCKET}/jobs/{job_id}/"
    assert body["array_size"] is None and body["samples_uri"] is None

    (call,) = submitted
    assert call["jobName"] == "QC-run-1-lane-2-"
    assert call["jobQueue"] == SPOT_QUEUE
    assert call["jobDefinition"] == "labbatch-example-fastq-stats"
    assert "arrayProperties" not in call
    env = {v["name"]: v["value"] for v in call["containerOverrides"]["environment"]}
    assert env == {
        "LABBATCH_JOB_ID": job_id,
        "LABBATCH_INPUTS": json.dumps([READS], separators=(",", ":")),
        "LABBATCH_PARAMETERS": "{}",
        "LABBATCH_OUTPUT_PREFIX": body["output_prefix"],
    }
    assert call["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "1"},
        {"type": "MEMORY", "value": "2048"},
    ]

    (record,) = lab.job_records()
    assert record["job_id"] == job_id
    assert record["record_type"] == "job"
    assert record["status"] == "SUBMITTED"
    assert record["batch_job_id"] == body["batch_job_id"]
    assert record["submitted_by"] == CALLER
    assert record["inputs"] == [READS]
    assert record["pipeline"] == "fastq-stats" and record["queue"] == "spot"
    assert record["vcpus"] == 1 and record["memory_mib"] == 2048
    assert record["input_bytes"] == 1024 and record["scratch_needed_bytes"] == 3072
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", record["created_at"])
    assert_ledger_agrees_with_batch(lab)


def test_overrides_defaults_and_s3_parameters(lab):
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = lab.submit(
        {
            "pipeline": "align",
            "inputs": [READS],
            "parameters": {"reference": REFERENCE},
            "queue": "on-demand",
            "vcpus": 4,
            "memory_mib": 8000,
        }
    )

    assert answer.status == 202, answer.body
    (call,) = submitted
    assert call["jobQueue"] == ON_DEMAND_QUEUE
    env = {v["name"]: v["value"] for v in call["containerOverrides"]["environment"]}
    # The pipeline's default (preset) is filled in: the runner gets the complete set.
    assert json.loads(env["LABBATCH_PARAMETERS"]) == {"preset": "sr", "reference": REFERENCE}
    assert call["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "4"},
        {"type": "MEMORY", "value": "8000"},
    ]
    (record,) = lab.job_records()
    # The reference is staged too, once per instance (its cache): 1 KiB of reads x 4 + the 1 KiB reference.
    assert record["scratch_needed_bytes"] == 1024 * 4 + 1024


def test_array_job_writes_the_sample_list_and_sizes_the_array(lab):
    submitted = capture_calls(api_clients().batch, "SubmitJob")
    samples = [
        {"name": "sample-a", "inputs": [READS]},
        {"name": "sample-b", "inputs": [READS_B], "parameters": {"preset": "map-ont"}},
        {"name": "sample-c", "inputs": [READS, READS_B]},
    ]

    answer = lab.submit({"pipeline": "align", "parameters": {"reference": REFERENCE}, "samples": samples})

    assert answer.status == 202, answer.body
    job_id = answer.body["job_id"]
    samples_uri = f"s3://{INPUTS_BUCKET}/work/samples/{job_id}.json"
    assert answer.body["array_size"] == 3
    assert answer.body["samples_uri"] == samples_uri

    (call,) = submitted
    assert call["arrayProperties"] == {"size": 3}
    env = {v["name"]: v["value"] for v in call["containerOverrides"]["environment"]}
    assert env["LABBATCH_SAMPLES_URI"] == samples_uri
    assert env["LABBATCH_OUTPUT_PREFIX"] == answer.body["output_prefix"]

    written = json.loads(lab.s3.get_object(Bucket=INPUTS_BUCKET, Key=f"work/samples/{job_id}.json")["Body"].read())
    assert written == [
        {"name": "sample-a", "inputs": [READS], "parameters": {"preset": "sr", "reference": REFERENCE}},
        {"name": "sample-b", "inputs": [READS_B], "parameters": {"preset": "map-ont", "reference": REFERENCE}},
        {"name": "sample-c", "inputs": [READS, READS_B], "parameters": {"preset": "sr", "reference": REFERENCE}},
    ]
    (record,) = lab.job_records()
    assert record["array_size"] == 3
    assert record["children"] == {"SUBMITTED": 3}
    assert record["samples_uri"] == samples_uri
    # The largest child stages two reads (x 4) and the reference (once per instance): 2 KiB x 4 + 1 KiB.
    assert record["scratch_needed_bytes"] == 2 * 1024 * 4 + 1024
    assert_ledger_agrees_with_batch(lab)


def test_one_sample_is_a_plain_job_writing_under_the_sample_name(lab):
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = lab.submit(
        {
            "pipeline": "align",
            "samples": [{"name": "only", "inputs": [READS_B], "parameters": {"reference": REFERENCE}}],
        }
    )

    assert answer.status == 202, answer.body
    assert answer.body["array_size"] is None and answer.body["samples_uri"] is None
    (call,) = submitted
    assert "arrayProperties" not in call
    env = {v["name"]: v["value"] for v in call["containerOverrides"]["environment"]}
    assert "LABBATCH_SAMPLES_URI" not in env and "LABBATCH_SHARED_INPUTS" not in env
    assert json.loads(env["LABBATCH_INPUTS"]) == [READS_B]
    assert json.loads(env["LABBATCH_PARAMETERS"]) == {"preset": "sr", "reference": REFERENCE}
    assert env["LABBATCH_OUTPUT_PREFIX"] == answer.body["output_prefix"] + "only/"
    assert lab.s3.list_objects_v2(Bucket=INPUTS_BUCKET, Prefix="work/").get("KeyCount", 0) == 0


def test_every_job_gets_its_own_output_prefix(lab):
    first = lab.submit({"pipeline": "fastq-stats", "inputs": [READS]})
    second = lab.submit({"pipeline": "fastq-stats", "inputs": [READS]})

    assert first.body["job_id"] != second.body["job_id"]
    assert first.body["output_prefix"] != second.body["output_prefix"]
    jobs = lab.batch_jobs()
    assert len(jobs) == 2
    assert {batch_environment(j)["LABBATCH_OUTPUT_PREFIX"] for j in jobs} == {
        first.body["output_prefix"],
        second.body["output_prefix"],
    }
    assert_ledger_agrees_with_batch(lab)


def _with_shared_inputs_pipeline(monkeypatch, use: str) -> None:
    """The example lab plus a pipeline whose command names shared inputs ({shared_input} is
    "required", {shared_inputs} alone "optional"), as the lab config would render it."""
    from labbatch_api import handler as job_api
    settings = json.loads(json.dumps(SETTINGS))
    settings["pipelines"]["pair"] = {**settings["pipelines"]["align"], "shared_inputs": use}
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()


def test_each_sample_keeps_its_own_inputs_and_shared_inputs_travel_apart(lab, monkeypatch):
    _with_shared_inputs_pipeline(monkeypatch, "required")
    submitted = capture_calls(api_clients().batch, "SubmitJob")
    samples = [{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS_B]}]

    answer = lab.submit({"pipeline": "pair", "inputs": [REFERENCE], "parameters": {"reference": REFERENCE},
                         "samples": samples})

    assert answer.status == 202, answer.body
    (call,) = submitted
    env = {v["name"]: v["value"] for v in call["containerOverrides"]["environment"]}
    assert json.loads(env["LABBATCH_SHARED_INPUTS"]) == [REFERENCE]
    assert json.loads(env["LABBATCH_INPUTS"]) == []
    written = json.loads(lab.s3.get_object(Bucket=INPUTS_BUCKET, Key=f"work/samples/{answer.body['job_id']}.json")["Body"].read())
    assert [(s["name"], s["inputs"]) for s in written] == [("a", [READS]), ("b", [READS_B])]


def test_a_single_sample_with_shared_inputs_keeps_them_apart_too(lab, monkeypatch):
    _with_shared_inputs_pipeline(monkeypatch, "optional")
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = lab.submit({"pipeline": "pair", "inputs": [REFERENCE], "parameters": {"reference": REFERENCE},
                         "samples": [{"name": "only", "inputs": [READS_B]}]})

    assert answer.status == 202, answer.body
    env = {v["name"]: v["value"] for v in submitted[0]["containerOverrides"]["environment"]}
    assert json.loads(env["LABBATCH_INPUTS"]) == [READS_B]
    assert json.loads(env["LABBATCH_SHARED_INPUTS"]) == [REFERENCE]


@pytest.mark.parametrize("body, code", [
    # align names only {input}: top-level inputs beside samples would be staged and never used.
    ({"pipeline": "align", "inputs": [READS], "parameters": {"reference": REFERENCE},
      "samples": [{"name": "a", "inputs": [READS_B]}, {"name": "b", "inputs": [READS_B]}]}, "shared_inputs_unused"),
    ({"pipeline": "align", "inputs": [READS], "parameters": {"reference": REFERENCE},
      "samples": [{"name": "only", "inputs": [READS_B]}]}, "shared_inputs_unused"),
])
def test_shared_inputs_the_pipeline_never_names_are_refused(lab, body, code):
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = lab.submit(body)

    assert answer.status == 422, answer.body
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["details"]["field"] == "inputs"
    assert submitted == [] and lab.job_records() == []


@pytest.mark.parametrize("body", [
    {"pipeline": "pair", "inputs": [READS], "parameters": {"reference": REFERENCE}},
    {"pipeline": "pair", "parameters": {"reference": REFERENCE},
     "samples": [{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS_B]}]},
])
def test_a_pipeline_that_needs_a_shared_input_refuses_requests_without_one(lab, monkeypatch, body):
    _with_shared_inputs_pipeline(monkeypatch, "required")
    submitted = capture_calls(api_clients().batch, "SubmitJob")

    answer = lab.submit(body)

    assert answer.status == 422, answer.body
    assert answer.body["error"]["code"] == "shared_inputs_missing"
    assert submitted == [] and lab.job_records() == []
