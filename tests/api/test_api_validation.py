"""Every refusal of POST /jobs: a 4xx in the one error shape, naming the field, and nothing
submitted to Batch or written to the ledger."""

from __future__ import annotations

import json

import pytest

from tests.api_lab import (
    INPUTS_BUCKET,
    READS,
    READS_B,
    REFERENCE,
    RESULTS_BUCKET,
    SETTINGS,
    api_clients,
    aws_error,
    inject,
)

MISSING = f"s3://{INPUTS_BUCKET}/runs/r1/missing.fastq.gz"
ALIGN = {"pipeline": "align", "inputs": [READS], "parameters": {"reference": REFERENCE}}
FASTQ = {"pipeline": "fastq-stats", "inputs": [READS]}


def with_(base: dict, **changes) -> dict:
    return {**base, **changes}


REFUSALS = {
    # shape (pydantic, via Powertools validation, reshaped)
    "pipeline missing": ({"inputs": [READS]}, "invalid_request", "pipeline"),
    "unknown field": (with_(FASTQ, colour="blue"), "invalid_request", "colour"),
    "inputs not a list": (with_(FASTQ, inputs=READS), "invalid_request", "inputs"),
    "too many inputs": (with_(FASTQ, inputs=[READS] * 101), "invalid_request", "inputs"),
    "parameter value not a string": (with_(ALIGN, parameters={"reference": REFERENCE, "preset": 7}), "invalid_request", "parameters.preset"),
    "parameter value nested": (with_(ALIGN, parameters={"reference": {"uri": REFERENCE}}), "invalid_request", "parameters.reference"),
    "parameter value too long": (with_(ALIGN, parameters={"reference": REFERENCE, "preset": "x" * 4097}), "invalid_request", "parameters.preset"),
    "parameter name unsafe": (with_(ALIGN, parameters={"reference": REFERENCE, "bad-key": "x"}), "invalid_request", "parameters.bad-key"),
    "vcpus zero": (with_(FASTQ, vcpus=0), "invalid_request", "vcpus"),
    "vcpus as a string": (with_(FASTQ, vcpus="2"), "invalid_request", "vcpus"),
    "memory too small": (with_(FASTQ, memory_mib=1), "invalid_request", "memory_mib"),
    "queue unknown": (with_(FASTQ, queue="gpu"), "invalid_request", "queue"),
    "samples empty": (with_(FASTQ, samples=[]), "invalid_request", "samples"),
    "too many samples": (
        with_(FASTQ, samples=[{"name": f"s{i}", "inputs": [READS]} for i in range(10_001)]),
        "invalid_request",
        "samples",
    ),
    "sample name unsafe": (with_(FASTQ, samples=[{"name": "../etc", "inputs": [READS]}]), "invalid_request", "samples[0].name"),
    "sample without inputs": (with_(FASTQ, samples=[{"name": "a", "inputs": []}]), "invalid_request", "samples[0].inputs"),
    # meaning (admission, against the lab's settings and S3)
    "unknown pipeline": (with_(FASTQ, pipeline="blast"), "unknown_pipeline", "pipeline"),
    "no inputs": (with_(FASTQ, inputs=[]), "missing_inputs", "inputs"),
    "not an s3 uri": (with_(FASTQ, inputs=["https://example.org/reads.fq"]), "invalid_s3_uri", "inputs[0]"),
    "bucket outside the lab": (with_(FASTQ, inputs=["s3://someone-elses-bucket/reads.fq"]), "input_outside_lab", "inputs[0]"),
    "results bucket is not an input bucket": (with_(FASTQ, inputs=[f"s3://{RESULTS_BUCKET}/jobs/x/out.txt"]), "input_outside_lab", "inputs[0]"),
    "empty key": (with_(FASTQ, inputs=[f"s3://{INPUTS_BUCKET}/"]), "invalid_s3_uri", "inputs[0]"),
    "dot-dot segment": (with_(FASTQ, inputs=[f"s3://{INPUTS_BUCKET}/runs/../secret"]), "invalid_s3_uri", "inputs[0]"),
    "empty segment": (with_(FASTQ, inputs=[f"s3://{INPUTS_BUCKET}/runs//a.fq"]), "invalid_s3_uri", "inputs[0]"),
    "empty folder": (with_(FASTQ, inputs=[f"s3://{INPUTS_BUCKET}/runs/nothing-here/"]), "input_not_found", "inputs[0]"),
    "input does not exist": (with_(FASTQ, inputs=[READS, MISSING]), "input_not_found", "inputs[1]"),
    "undeclared parameter": (with_(FASTQ, parameters={"colour": "blue"}), "unknown_parameter", "parameters.colour"),
    "required parameter missing": (with_(ALIGN, parameters={}), "missing_parameter", "parameters.reference"),
    "s3 parameter outside the lab": (with_(ALIGN, parameters={"reference": "s3://elsewhere/ref.fa"}), "input_outside_lab", "parameters.reference"),
    "s3 parameter does not exist": (with_(ALIGN, parameters={"reference": f"s3://{INPUTS_BUCKET}/nope.fa"}), "input_not_found", "parameters.reference"),
    "vcpus above the instance limit": (with_(FASTQ, vcpus=9), "vcpus_too_many", "vcpus"),
    "memory above the instance limit": (with_(FASTQ, memory_mib=SETTINGS["limits"]["max_memory_mib"] + 1), "memory_too_large", "memory_mib"),
    "duplicate sample names": (
        with_(FASTQ, samples=[{"name": "a", "inputs": [READS]}, {"name": "a", "inputs": [READS_B]}]),
        "duplicate_sample_name",
        "samples[1].name",
    ),
    "sample input missing": (
        with_(FASTQ, inputs=[], samples=[{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [MISSING]}]),
        "input_not_found",
        "samples[1].inputs[0]",
    ),
    "sample undeclared parameter": (
        with_(FASTQ, inputs=[], samples=[{"name": "a", "inputs": [READS], "parameters": {"colour": "red"}}]),
        "unknown_parameter",
        "samples[0].parameters.colour",
    ),
    "sample lacks a required parameter": (
        {
            "pipeline": "align",
            "samples": [
                {"name": "a", "inputs": [READS], "parameters": {"reference": REFERENCE}},
                {"name": "b", "inputs": [READS_B]},
            ],
        },
        "missing_parameter",
        "samples[1].parameters.reference",
    ),
}


@pytest.mark.parametrize("body, code, field", REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_with_the_field_and_nothing_created(lab, body, code, field):
    answer = lab.submit(body)

    assert answer.status == 422, answer.body
    assert answer.error["code"] == code
    assert answer.error["details"]["field"] == field
    assert field in answer.error["message"]
    lab.assert_nothing_created()


def test_refusal_inside_the_idempotency_guard_leaves_no_item(lab):
    answer = lab.submit(with_(FASTQ, inputs=[MISSING]), headers={"Idempotency-Key": "k-1"})

    assert answer.status == 422
    assert answer.error["code"] == "input_not_found"
    lab.assert_nothing_created()  # the in-progress idempotency item is gone too


def test_vcpus_above_what_the_queue_may_run(lab, monkeypatch):
    from labbatch_api import handler as job_api
    settings = json.loads(json.dumps(SETTINGS))
    settings["queue_max_vcpus"]["on-demand"] = 4
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()

    answer = lab.submit(with_(FASTQ, vcpus=6, queue="on-demand"))

    assert answer.status == 422
    assert answer.error["code"] == "vcpus_too_many"
    assert answer.error["details"] == {"field": "vcpus", "asked": 6, "available": 4}
    lab.assert_nothing_created()


@pytest.mark.parametrize("field, asked, machine, code, words", [
    ("vcpus", 3, 2, "vcpus_too_many", "this local machine (2; the lab's instances give 8)"),
    ("memory_mib", 3000, 2500, "memory_too_large", "this local machine can give a job (2500 MiB; the lab's instances give"),
])
def test_a_local_machines_limit_is_called_the_machines_not_the_labs(lab, monkeypatch, field, asked, machine, code,
                                                                   words):
    from labbatch_api import handler as job_api
    settings = json.loads(json.dumps(SETTINGS))
    key = "max_vcpus" if field == "vcpus" else "max_memory_mib"
    settings["limits"][f"lab_{key}"] = settings["limits"][key]  # what local mode sets when the machine is smaller
    settings["limits"][key] = machine
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()

    answer = lab.submit(with_(FASTQ, **{field: asked}))

    assert answer.status == 422 and answer.error["code"] == code
    assert words in answer.error["message"] and "this lab's instances" not in answer.error["message"]
    assert answer.error["details"]["available"] == machine


def test_local_limits_name_the_labs_own_where_the_machine_is_smaller(monkeypatch):
    from pathlib import Path

    from labbatch.lab.loader import load_lab
    from labbatch.local import lab as local_lab

    lab = load_lab(Path(__file__).resolve().parents[2] / "labs" / "example.yaml")
    monkeypatch.setattr(local_lab.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(local_lab, "machine_memory_mib", lambda: 10**7)
    limits = local_lab.local_limits(lab)

    pool = lab.pools["default"].job_limits
    assert (limits["max_vcpus"], limits["lab_max_vcpus"]) == (1, pool["max_vcpus"])
    assert limits["max_memory_mib"] == pool["max_memory_mib"] and "lab_max_memory_mib" not in limits


def test_scratch_too_small_says_needed_available_and_what_to_change(lab):
    # HEAD answers that the reads are 40 GiB: x3 is 120 GiB, the lab has 100.
    from botocore.awsrequest import AWSResponse

    from tests.api_lab import _RawBody

    big = AWSResponse("https://injected", 200, {"Content-Length": str(40 * 1024**3)}, _RawBody(b""))
    inject(api_clients().s3, "HeadObject", [big])

    answer = lab.submit(FASTQ)

    assert answer.status == 422
    error = answer.error
    assert error["code"] == "scratch_too_small"
    assert error["details"]["field"] == "inputs"
    assert error["details"]["needed_gib"] == 120.0
    assert error["details"]["available_gib"] == 100
    assert "120.0 GiB" in error["message"] and "100 GiB" in error["message"]
    assert "samples" in error["message"]
    lab.assert_nothing_created()


def test_unreadable_input(lab):
    inject(api_clients().s3, "HeadObject", [aws_error("403", 403, protocol="head")])

    answer = lab.submit(FASTQ)

    assert answer.status == 422
    assert answer.error["code"] == "input_not_readable"
    assert answer.error["details"]["field"] == "inputs[0]"
    lab.assert_nothing_created()


def test_inputs_too_large_for_a_batch_request(lab):
    long_keys = [f"s3://{INPUTS_BUCKET}/runs/{'x' * 900}/{i}.fq" for i in range(40)]
    for uri in long_keys:
        lab.put_input(uri, size=10)

    answer = lab.submit(with_(FASTQ, inputs=long_keys))

    assert answer.status == 422
    assert answer.error["code"] == "too_large_for_batch"
    assert answer.error["details"]["field"] == "inputs"
    lab.assert_nothing_created()


def test_too_many_distinct_objects(lab, monkeypatch):
    from labbatch_api import admission
    monkeypatch.setattr(admission, "MAX_DISTINCT_OBJECTS", 2)
    samples = [{"name": f"s{i}", "inputs": [f"s3://{INPUTS_BUCKET}/runs/{i}.fq"]} for i in range(3)]

    answer = lab.submit(with_(FASTQ, inputs=[], samples=samples))

    assert answer.status == 422
    assert answer.error["code"] == "too_many_inputs"
    assert answer.error["details"]["field"] == "samples[2].inputs[0]"
    lab.assert_nothing_created()


def test_body_that_is_not_json(lab):
    answer = lab.call("POST", "/jobs", raw_body="{not json")

    assert answer.status == 422
    assert answer.error["code"] == "invalid_request"
    assert answer.error["details"]["field"] == "body"
    lab.assert_nothing_created()


def test_one_body_limit_for_the_handler_the_local_front_the_client_and_the_docs():
    from pathlib import Path

    from labbatch.client import sdk as client
    from labbatch.lab.api_limits import MAX_BODY_BYTES
    from labbatch.local import apigateway

    assert SETTINGS["max_body_bytes"] == apigateway.MAX_PAYLOAD_BYTES == client.MAX_BODY_BYTES == MAX_BODY_BYTES
    assert MAX_BODY_BYTES == 5 * 1024 * 1024
    local_mode = (Path(__file__).resolve().parents[2] / "docs" / "local-mode.md").read_text()
    assert "bodies over 5 MiB get 413" in local_mode and "10 MB" not in local_mode


def test_body_too_large(lab):
    from labbatch.lab.api_limits import MAX_BODY_BYTES

    answer = lab.call("POST", "/jobs", raw_body=" " * (MAX_BODY_BYTES + 1))

    assert answer.status == 413
    assert answer.error["code"] == "body_too_large"
    assert answer.error["details"]["field"] == "body"
    lab.assert_nothing_created()


def test_wrong_content_type(lab):
    answer = lab.call("POST", "/jobs", raw_body="pipeline=fastq-stats", headers={"Content-Type": "text/plain"})

    assert answer.status == 415
    assert answer.error["code"] == "unsupported_media_type"
    lab.assert_nothing_created()


def test_idempotency_key_too_long(lab):
    answer = lab.submit(FASTQ, headers={"Idempotency-Key": "k" * 256})

    assert answer.status == 422
    assert answer.error["details"]["field"] == "Idempotency-Key"
    lab.assert_nothing_created()


def test_every_problem_is_listed(lab):
    answer = lab.submit({"pipeline": "fastq-stats", "inputs": "nope", "vcpus": -1, "extra": 1})

    assert answer.status == 422
    fields = {p["field"] for p in answer.error["details"]["problems"]}
    assert fields == {"inputs", "vcpus", "extra"}
    assert "2 more problems" in answer.error["message"]
