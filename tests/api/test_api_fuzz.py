"""Hostile input to the job API handler, fuzzed in-process against moto (hypothesis).

Whatever arrives, the handler answers below 500, without a traceback or internal detail in
the body; every refusal is a 4xx in the one error shape; and a refused request leaves no
Batch job, ledger record or sample list behind. Runs are derandomized (reproducible in CI)
and bounded (a few hundred examples in all).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api_lab import (
    ACCOUNT,
    INPUTS_BUCKET,
    READS,
    READS_B,
    REFERENCE,
    REFERENCES_BUCKET,
    RESULTS_BUCKET,
    REGION,
    SETTINGS,
    TABLE,
    FakeLambdaContext,
    api_event,
    batch_environment,
)

FUZZ = settings(
    max_examples=40,
    deadline=timedelta(seconds=5),  # generous on 2 busy cores; catches only pathological slowness
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_VCPUS = SETTINGS["limits"]["max_vcpus"]
MAX_MEMORY = SETTINGS["limits"]["max_memory_mib"]

# What must never reach a caller: Python and botocore internals.
LEAKS = re.compile(
    r"Traceback|File \"|/work/|site-packages|\.py\b|botocore|boto3|pydantic|errors\.pydantic\.dev"
    r"|\b[A-Z][A-Za-z]*(Error|Exception)\b|\bline \d+, in\b|0x[0-9a-f]{6,}",
)


# --- calling the handler and checking every answer ------------------------------------------

def invoke(event: dict[str, Any]) -> tuple[int, str, dict]:
    from labbatch_api import handler as job_api
    answer = job_api.lambda_handler(event, FakeLambdaContext())
    text = answer["body"] or ""
    if answer.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    return answer["statusCode"], text, dict(answer.get("headers") or {})


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _without_echoes(text: str, sent: list[str]) -> str:
    """The answer with everything the caller sent removed: an echoed URI may spell anything."""
    for s in sorted({s for s in sent if s}, key=len, reverse=True):
        for form in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1], repr(s)[1:-1]):
            text = text.replace(form, "")
            text = text.replace(json.dumps(form)[1:-1], "")
    return text


def check_answer(status: int, text: str, sent: list[str]) -> Any:
    assert status < 500, text
    body = json.loads(text)
    assert not LEAKS.search(_without_echoes(text, sent)), text
    if status >= 300:
        assert 400 <= status < 500
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"code", "message", "details"}, error
        assert isinstance(error["code"], str) and re.fullmatch(r"[a-z][a-z0-9_]*", error["code"])
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["details"], dict)
    return body


def snapshot(lab) -> tuple:
    """How many Batch jobs (children included), ledger items and sample lists there are.

    Read from moto's Batch backend directly: listing every queue x status through the API
    costs 14 calls, and this runs twice per fuzzed request."""
    from moto.batch.models import batch_backends

    jobs = len(batch_backends[ACCOUNT][REGION]._jobs)
    items = lab.dynamodb.scan(TableName=TABLE, Select="COUNT", ConsistentRead=True)["Count"]
    objects = lab.s3.list_objects_v2(Bucket=INPUTS_BUCKET).get("KeyCount", 0)
    return jobs, items, objects


def post(lab, body_text: str | None, *, headers: dict[str, str] | None = None, base64_body: bool = False,
         sent: Any = None) -> tuple[int, Any]:
    """POST /jobs with this exact body; check the answer; a refusal must create nothing."""
    before = snapshot(lab)
    event = api_event("POST", "/jobs", headers=headers, raw_body=body_text)
    event["isBase64Encoded"] = base64_body
    status, text, _ = invoke(event)
    body = check_answer(status, text, _strings(sent) + _strings(headers or {}))
    if status != 202:
        assert snapshot(lab) == before, f"refused ({status}) but something was created: {text}"
    return status, body


def post_json(lab, payload: Any, **kwargs) -> tuple[int, Any]:
    return post(lab, json.dumps(payload), sent=payload, **kwargs)


# --- strategies -------------------------------------------------------------------------

json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=20))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

# At, around and past every numeric limit, plus things that are not integers at all.
hostile_numbers = st.sampled_from([
    0, -1, 1, 2, 3, MAX_VCPUS, MAX_VCPUS + 1, 4, MAX_MEMORY, MAX_MEMORY + 1, 2**31 - 1, 2**31, 2**63, -(2**63),
    10**100, 10**4000, 1.0, 1.5, -0.0, 1e308, "2", "", "1e3", True, False, None, [], {}, [1],
]) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)

LAB_BUCKETS = [INPUTS_BUCKET, REFERENCES_BUCKET]
uri_segments = st.sampled_from([
    "..", ".", "", "%2e%2e", "%2E%2E", "%2f", "..%2f", "\u2025", "\uff0e\uff0e", ".\u200b.", "\u202e..",
    "a\u0000b", "a\nb", "a\u0085b", "CON", "~", "a b", "runs", "r1", "sample-a.fastq.gz", "\\..\\",
    "\ud800", "x" * 1100, "\u0130", "e\u0301",
]) | st.text(max_size=12)
hostile_buckets = st.sampled_from([
    *LAB_BUCKETS, RESULTS_BUCKET, INPUTS_BUCKET.upper(), INPUTS_BUCKET + ".", INPUTS_BUCKET + "\u200b",
    INPUTS_BUCKET.replace("-", "\u2010"), INPUTS_BUCKET[:-1], "", "..", "someone-elses-bucket",
    f"{INPUTS_BUCKET}/..", f"{INPUTS_BUCKET}@evil", "169.254.169.254",
])
hostile_uris = st.one_of(
    st.builds(lambda scheme, bucket, segments: f"{scheme}{bucket}/" + "/".join(segments),
              st.sampled_from(["s3://", "S3://", "s3:/", "s3:///", "https://", "file://", "", "s3://s3://"]),
              hostile_buckets, st.lists(uri_segments, min_size=0, max_size=4)),
    st.sampled_from([READS, READS_B, REFERENCE, f"s3://{INPUTS_BUCKET}//runs/r1/sample-a.fastq.gz",
                     f"s3://{INPUTS_BUCKET}/runs/r1/../r1/sample-a.fastq.gz",
                     f"s3://{INPUTS_BUCKET}/runs/r1/%2e%2e/sample-a.fastq.gz",
                     f"s3://{INPUTS_BUCKET}/runs/r1/sample-a.fastq.gz/", f"s3://{INPUTS_BUCKET}/runs/r1/./x"]),
    st.text(max_size=30),
)
# Keys and values a shell or a template engine would treat specially.
INJECTIONS = ["a;b", "$(id)", "`id`", "a\nb", "--flag", "-x", "{output_dir}", "{param:reference}", "{inputs}",
              "${HOME}", "a b", "'", '"', "\\", "reference ", "Reference", "reference\n", "__proto__", "",
              "x" * 65, "\u0440eference"]
hostile_parameters = st.dictionaries(
    st.sampled_from(["reference", "preset", *INJECTIONS]) | st.text(max_size=10),
    st.sampled_from([REFERENCE, *INJECTIONS, "x" * 4096, "x" * 4097]) | st.text(max_size=20) | json_values,
    max_size=4,
)
sample_names = st.sampled_from(["a", "b", "../a", ".", "a/b", "a\u0000", "-a", "a" * 129, ""]) | st.text(max_size=10)
hostile_samples = st.lists(
    st.fixed_dictionaries(
        {"name": sample_names},
        optional={"inputs": st.lists(hostile_uris, max_size=3) | json_values, "parameters": hostile_parameters,
                  "extra": json_values},
    ) | json_values,
    max_size=4,
)
submissions = st.fixed_dictionaries({}, optional={
    "pipeline": st.sampled_from(["fastq-stats", "align", "Align", "align ", "../align", ""]) | json_values,
    "inputs": st.lists(hostile_uris, max_size=4) | json_values,
    "parameters": hostile_parameters | json_values,
    "queue": st.sampled_from(["spot", "on-demand", "SPOT", "gpu", ""]) | json_values,
    "vcpus": hostile_numbers,
    "memory_mib": hostile_numbers,
    "name": st.text(max_size=300) | json_values,
    "samples": hostile_samples | json_values,
})


# --- the fuzz tests -----------------------------------------------------------------------

@FUZZ
@given(payload=submissions)
@example(payload={"pipeline": "fastq-stats", "inputs": [READS], "vcpus": 10**4000})
@example(payload={"pipeline": "fastq-stats", "inputs": [f"s3://{INPUTS_BUCKET}/a\ud800b"]})
@example(payload={"pipeline": "align", "inputs": [READS], "parameters": {"reference": REFERENCE, "preset": "\udfff"}})
def test_any_submission_is_answered_safely(lab, payload):
    post_json(lab, payload)


@FUZZ
@given(payload=json_values)
def test_any_json_document_as_the_body(lab, payload):
    post_json(lab, payload)


@FUZZ
@given(data=st.binary(max_size=64))
@example(data=b"\xff\xfe{\"pipeline\": \"align\"}")
@example(data=b"{\"pipeline\": \"fastq-stats\", \"inputs\": [\"\xc3\x28\"]}")
def test_any_bytes_as_a_base64_body(lab, data):
    post(lab, base64.b64encode(data).decode(), base64_body=True)


@FUZZ
@given(text=st.text(max_size=64))
@example(text="!!!not base64")
def test_a_body_flagged_base64_that_is_not(lab, text):
    post(lab, text, base64_body=True, sent=text)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_as_the_body(lab, text):
    post(lab, text, sent=text)


@FUZZ
@given(content_type=st.sampled_from([
    "text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/json; charset=utf-16", "application/jsonp", "application/json-patch+json", "APPLICATION/JSON",
    "*/*", "application/octet-stream", "text/html; charset=utf-8", ";", "application/json\u0000",
]) | st.text(max_size=30))
def test_any_content_type(lab, content_type):
    body = json.dumps({"pipeline": "fastq-stats", "inputs": [READS]})
    status, _ = post(lab, body, headers={"Content-Type": content_type}, sent=[content_type])
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in ("", "application/json"):
        assert status == 415


def _part(name: str, value: str) -> str:
    return f'--x\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'


def test_form_and_multipart_bodies_submit_nothing(lab):
    # Regression: Powertools parses these media types into the request model, so a multipart
    # body with two `inputs` parts was accepted and submitted (202). The contract is JSON.
    multipart = _part("pipeline", "fastq-stats") + _part("inputs", READS) + _part("inputs", READS_B) + "--x--\r\n"
    status, body = post(lab, multipart, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")
    form = f"pipeline=fastq-stats&inputs={READS}&inputs={READS_B}"
    status, body = post(lab, form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize("body, base64_body", [
    pytest.param(base64.b64encode(b"\xff\xfe{}").decode(), True, id="base64 of non-UTF-8 bytes"),
    pytest.param("!!!not base64", True, id="flagged base64 but is not"),
    pytest.param("[" * 100_000 + "]" * 100_000, False, id="arrays nested 100,000 deep"),
    pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, False, id="objects nested 50,000 deep"),
    pytest.param('{"pipeline": "fastq-stats", "vcpus": ' + "9" * 5000 + "}", False, id="a 5,000-digit number"),
])
def test_unreadable_bodies_are_invalid_requests_not_errors(lab, body, base64_body):
    # Regression: each of these was a 500 (UnicodeDecodeError, binascii.Error, RecursionError,
    # ValueError from int parsing, all raised inside Powertools' body parsing).
    status, answer = post(lab, body, base64_body=base64_body)

    assert status == 422
    assert answer["error"]["code"] == "invalid_request"
    assert answer["error"]["details"]["field"] == "body"


@pytest.mark.parametrize("size", [5 * 1024 * 1024 + 1, 6 * 1024 * 1024])
def test_oversized_bodies(lab, size):
    body = json.dumps({"pipeline": "fastq-stats", "inputs": [READS], "name": "x" * size})
    status, answer = post(lab, body)
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    status, answer = post(lab, base64.b64encode(body.encode()).decode(), base64_body=True)
    assert status == 413 and answer["error"]["code"] == "body_too_large"


def test_body_just_under_the_limit_is_read(lab):
    body = json.dumps({"pipeline": "fastq-stats", "inputs": [READS], "name": "x"})
    body = body[:-1] + " " * (5 * 1024 * 1024 - len(body)) + "}"
    status, answer = post(lab, body)
    assert status == 202, answer


# --- huge arrays: at and past the limits -------------------------------------------------

def _samples(count: int, **extra) -> list[dict]:
    return [{"name": f"s{i}", "inputs": [READS], **extra} for i in range(count)]


@pytest.mark.parametrize("payload, code, field", [
    pytest.param({"pipeline": "fastq-stats", "samples": _samples(10_001)}, "invalid_request", "samples",
                 id="10,001 samples"),
    pytest.param({"pipeline": "fastq-stats", "samples": _samples(9_999) + [
        {"name": "last", "inputs": ["s3://someone-elses-bucket/x.fq"]}]}, "input_outside_lab", "samples[9999].inputs[0]",
                 id="10,000 samples, the last outside the lab"),
    pytest.param({"pipeline": "fastq-stats", "samples": _samples(9_999) + [{"name": "s0", "inputs": [READS]}]},
                 "duplicate_sample_name", "samples[9999].name", id="10,000 samples, the last a duplicate"),
    pytest.param({"pipeline": "fastq-stats", "inputs": [READS] * 101}, "invalid_request", "inputs", id="101 inputs"),
    pytest.param({"pipeline": "fastq-stats", "inputs": [READS] * 99 + [f"s3://{INPUTS_BUCKET}/a/../b"]},
                 "invalid_s3_uri", "inputs[99]", id="100 inputs, the last with .."),
    pytest.param({"pipeline": "fastq-stats", "samples": [{"name": "a", "inputs": [READS] * 101}] * 2},
                 "invalid_request", "samples[0].inputs", id="a sample with 101 inputs"),
    pytest.param({"pipeline": "fastq-stats", "inputs": [READS], "parameters": {f"p{i}": "x" for i in range(65)}},
                 "invalid_request", "parameters", id="65 parameters"),
])
def test_huge_arrays_are_refused_whole(lab, payload, code, field):
    status, answer = post_json(lab, payload)

    assert status == 422, answer
    assert answer["error"]["code"] == code
    assert answer["error"]["details"]["field"] == field


def test_one_hundred_inputs_are_accepted(lab):
    uris = [f"s3://{INPUTS_BUCKET}/runs/many/{i}.fq" for i in range(100)]
    for uri in uris:
        lab.put_input(uri, size=10)

    status, answer = post_json(lab, {"pipeline": "fastq-stats", "inputs": uris})

    assert status == 202, answer


@pytest.mark.parametrize("key", ["a\u0000b", "a\nb", "a\u007fb", "a\u0085b", "a\u009bb"], ids=repr)
def test_keys_with_control_characters_are_refused(lab, key):
    # C1 controls too: U+0085 is a line break to many log readers, U+009B a terminal escape.
    lab.put_input(f"s3://{INPUTS_BUCKET}/{key}")

    status, answer = post_json(lab, {"pipeline": "fastq-stats", "inputs": [f"s3://{INPUTS_BUCKET}/{key}"]})

    assert status == 422
    assert answer["error"]["code"] == "invalid_s3_uri"


# --- numbers at and past every limit -----------------------------------------------------

NOT_SANE_NUMBERS = [0, -1, -(2**63), 1.0, 2.5, 1e308, -0.0, "2", "", True, False, [], {}, 2**63, 10**100]  # null: the default


@pytest.mark.parametrize("field", ["vcpus", "memory_mib"])
def test_resource_numbers_that_are_not_sane_are_refused(lab, field):
    for value in NOT_SANE_NUMBERS:
        status, answer = post_json(lab, {"pipeline": "fastq-stats", "inputs": [READS], field: value})

        assert status == 422, (value, answer)
        assert answer["error"]["details"]["field"] == field


@pytest.mark.parametrize("field, limit", [("vcpus", MAX_VCPUS), ("memory_mib", MAX_MEMORY)])
def test_resource_numbers_at_and_just_past_the_limit(lab, field, limit):
    at, _ = post_json(lab, {"pipeline": "fastq-stats", "inputs": [READS], field: limit, "queue": "spot"})
    past, answer = post_json(lab, {"pipeline": "fastq-stats", "inputs": [READS], field: limit + 1})

    assert at == 202
    assert past == 422 and answer["error"]["details"]["field"] == field


# --- parameters that could inject into the container command ----------------------------

UNSAFE_KEYS = ["a;b", "$(id)", "`id`", "a\nb", "--flag", "-x", "{output_dir}", "a b", "x" * 65, "reference\n",
               "\u0440eference", "__proto__"]
HOSTILE_VALUES = ["{output_dir}", "{param:reference}", "$(id)", "`id`", "a; rm -rf /", "--flag", "a\nb", "' \" \\"]


def test_unsafe_parameter_keys_are_refused(lab):
    for key in UNSAFE_KEYS:
        status, answer = post_json(lab, {"pipeline": "align", "inputs": [READS],
                                         "parameters": {"reference": REFERENCE, key: "x"}})

        assert status == 422, (key, answer)
        assert answer["error"]["details"]["field"].startswith("parameters")


def test_hostile_parameter_values_reach_batch_as_data(lab, monkeypatch):
    # A value is one string in the job's environment (LABBATCH_PARAMETERS, JSON), never part of
    # the command Batch runs; the runner substitutes it without expanding it (see
    # tests/runner/test_runner_parameter_values.py).
    from labbatch_api import handler as job_api
    settings = json.loads(json.dumps(SETTINGS))
    settings["pipelines"]["align"]["parameters"]["preset"] = "map-ont"
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()

    for value in HOSTILE_VALUES:
        status, answer = post_json(lab, {"pipeline": "align", "inputs": [READS],
                                         "parameters": {"reference": REFERENCE, "preset": value}})

        assert status == 202, answer
        (job,) = [j for j in lab.batch_jobs() if batch_environment(j)["LABBATCH_JOB_ID"] == answer["job_id"]]
        assert "command" not in (job.get("containerOverrides") or {})
        assert job["container"]["command"] == ["labbatch-runner"]
        assert json.loads(batch_environment(job)["LABBATCH_PARAMETERS"])["preset"] == value


# --- the other routes -------------------------------------------------------------------

paths = st.one_of(
    st.builds(lambda s: f"/jobs/{s}", st.text(max_size=40)),
    st.sampled_from(["/jobs/", "/jobs//", "/jobs/../pipelines", "/jobs/%2e%2e", "/jobs/j-" + "0" * 26,
                     "/jobs/J-" + "0" * 26, "/jobs/j-" + "0" * 2000, "/pipelines/", "/openapi.json/x", "//jobs",
                     "/jobs?x=1", "/", ""]),
    st.text(max_size=30),
)


@FUZZ
@given(method=st.sampled_from(["GET", "DELETE", "PUT", "PATCH", "POST", "HEAD", "OPTIONS", "TRACE", "get", "FOO"]),
       path=paths)
def test_any_method_and_path(lab, method, path):
    before = snapshot(lab)
    status, text, _ = invoke(api_event(method, path))
    check_answer(status, text, [method, path])
    if status != 202:
        assert snapshot(lab) == before
    if method in ("GET", "DELETE") and re.fullmatch(r"/jobs/[^/]+", path):
        assert status == 404 and json.loads(text)["error"]["code"] == "no_such_job", text


def test_a_job_id_no_route_parameter_takes_is_no_such_job(lab):
    # Regression (found by schemathesis through local mode): Powertools' route parameters take
    # only URI-safe characters and \w, so GET /jobs/<emoji> matched no route and was answered
    # "405: GET is not allowed on /jobs/...; use DELETE, GET".
    for method in ("GET", "DELETE"):
        for job_id in ['a"b', "\U0001f600", "a#b", "a?b", "a`b", "a\\b", "\u0000", "\U000ae37c"]:
            status, text, _ = invoke(api_event(method, f"/jobs/{job_id}"))

            assert status == 404, (method, job_id, text)
            assert json.loads(text)["error"]["code"] == "no_such_job"


@FUZZ
@given(query=st.dictionaries(
    st.sampled_from(["status", "pipeline", "limit", "next_token", "x"]) | st.text(max_size=8),
    st.sampled_from(["", "0", "-1", "1", "100", "101", "99999999999999999999", "1.5", "SUCCEEDED", "succeeded",
                     "eyJqb2JfaWQiOiB7IlMiOiAieCJ9fQ==", "e30=", "bnVsbA==", "W10=", "!!", "\u0000"])
    | st.text(max_size=40)
    | st.builds(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode(), json_values),
    max_size=4,
))
def test_any_list_query(lab, query):
    status, text, _ = invoke(api_event("GET", "/jobs", query=query))
    check_answer(status, text, _strings(query))


@FUZZ
@given(key=st.text(max_size=300) | st.sampled_from(["", " ", "\u0000", "k" * 255, "k" * 256]))
def test_any_idempotency_key(lab, key):
    post_json(lab, {"pipeline": "fastq-stats", "inputs": ["s3://someone-elses-bucket/x"]},
              headers={"Idempotency-Key": key})


def test_no_caller_identity_is_refused(lab):
    before = snapshot(lab)
    status, text, _ = invoke(api_event("POST", "/jobs", {"pipeline": "fastq-stats", "inputs": [READS]}, caller=None))
    check_answer(status, text, [])
    assert status == 403
    assert snapshot(lab) == before


def test_every_operation_documents_its_success_answer(lab):
    # Regression (found by schemathesis): GET /jobs, GET /jobs/{job_id} and GET /lab passed
    # `responses=ERROR_RESPONSES`, which replaced Powertools' default 200, so the document said
    # those routes could only fail.
    status, text, _ = invoke(api_event("GET", "/openapi.json"))
    assert status == 200
    document = json.loads(text)  # names models such as SubmitError: not a leak

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert any(code.startswith("2") for code in operation["responses"]), f"{method.upper()} {path}"
