"""Admission at its edges: a request exactly at each limit is accepted, one step past it is refused
with the field, what was asked, what is possible and what to change (issue 12)."""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse

from tests.api_lab import READS, SETTINGS, _RawBody, api_clients, inject

GIB = 1024**3
LIMITS = SETTINGS["limits"]
FASTQ = {"pipeline": "fastq-stats", "inputs": [READS]}
DISK_FACTOR = SETTINGS["pipelines"]["fastq-stats"]["disk_factor"]


def sized(size: int) -> AWSResponse:
    return AWSResponse("https://injected", 200, {"Content-Length": str(size)}, _RawBody(b""))


def batch_resources(lab, batch_job_id: str) -> dict[str, str]:
    job = lab.batch.describe_jobs(jobs=[batch_job_id])["jobs"][0]
    return {r["type"]: r["value"] for r in job["container"].get("resourceRequirements", [])}


@pytest.mark.parametrize("field, value", [("vcpus", LIMITS["max_vcpus"]), ("memory_mib", LIMITS["max_memory_mib"])])
def test_exactly_at_the_instance_limit_is_accepted(lab, field, value):
    answer = lab.submit({**FASTQ, field: value})

    assert answer.status == 202, answer.body
    record = lab.call("GET", f"/jobs/{answer.body['job_id']}").body
    assert record[field] == value


@pytest.mark.parametrize("field, value, code", [
    ("vcpus", LIMITS["max_vcpus"] + 1, "vcpus_too_many"),
    ("memory_mib", LIMITS["max_memory_mib"] + 1, "memory_too_large"),
])
def test_one_past_the_instance_limit_says_asked_available_and_what_to_ask(lab, field, value, code):
    answer = lab.submit({**FASTQ, field: value})

    assert answer.status == 422
    error = answer.error
    limit = LIMITS[f"max_{field}"]
    assert error["code"] == code
    assert error["details"] == {"field": field, "asked": value, "available": limit}
    assert error["message"].startswith(f"{field}: {value} ")
    assert f"ask for {limit}" in error["message"]
    lab.assert_nothing_created()


def test_the_pipeline_default_past_the_limit_is_named_as_the_default(lab, monkeypatch):
    from labbatch_api import handler as job_api
    settings = json.loads(json.dumps(SETTINGS))
    settings["limits"]["max_memory_mib"] = 1024  # below fastq-stats' 2,048 MiB default
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()

    answer = lab.submit(FASTQ)

    assert answer.status == 422 and answer.error["code"] == "memory_too_large"
    assert "(the fastq-stats default)" in answer.error["message"]
    lab.assert_nothing_created()


def test_exactly_the_queues_max_vcpus_is_accepted_one_more_is_refused(lab, monkeypatch):
    from labbatch_api import handler as job_api
    settings = json.loads(json.dumps(SETTINGS))
    settings["queue_max_vcpus"]["on-demand"] = 4
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()

    accepted = lab.submit({**FASTQ, "queue": "on-demand", "vcpus": 4})
    refused = lab.submit({**FASTQ, "queue": "on-demand", "vcpus": 5})

    assert accepted.status == 202, accepted.body
    assert refused.status == 422 and refused.error["code"] == "vcpus_too_many"
    assert refused.error["details"] == {"field": "vcpus", "asked": 5, "available": 4}
    assert "on-demand queue" in refused.error["message"] and "another queue" in refused.error["message"]


def test_scratch_exactly_full_is_accepted_one_byte_more_is_refused(lab):
    scratch = SETTINGS["scratch_gib"] * GIB
    fits = int(scratch // DISK_FACTOR)  # x disk factor: just at the volume's size
    assert fits * DISK_FACTOR <= scratch < (fits + 1) * DISK_FACTOR

    inject(api_clients().s3, "HeadObject", [sized(fits)])
    accepted = lab.submit(FASTQ)
    inject(api_clients().s3, "HeadObject", [sized(fits + 1)])
    refused = lab.submit(FASTQ)

    assert accepted.status == 202, accepted.body
    assert refused.status == 422
    error = refused.error
    assert error["code"] == "scratch_too_small" and error["details"]["field"] == "inputs"
    assert error["details"]["available_gib"] == SETTINGS["scratch_gib"]
    assert error["details"]["disk_factor"] == DISK_FACTOR
    assert "Split the inputs over samples" in error["message"]


def test_each_array_child_has_its_own_scratch(lab):
    """Two samples that would not fit together fit as two children; the refusal names a sample.
    (HEADs run in parallel, so the injected sizes are not tied to one sample: both are too big.)"""
    scratch = SETTINGS["scratch_gib"] * GIB
    fits = int(scratch // DISK_FACTOR)
    from tests.api_lab import READS_B

    body = {"pipeline": "fastq-stats", "samples": [{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS_B]}]}
    inject(api_clients().s3, "HeadObject", [sized(fits), sized(fits)])
    assert lab.submit(body).status == 202

    inject(api_clients().s3, "HeadObject", [sized(fits + 1), sized(fits + 1)])
    answer = lab.submit(body)
    assert answer.status == 422 and answer.error["details"]["field"] == "samples[0]"
    assert "samples[0]'s inputs" in answer.error["message"]
