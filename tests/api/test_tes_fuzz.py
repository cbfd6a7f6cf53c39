"""Hostile input to POST /ga4gh/tes/v1/tasks, fuzzed in-process against moto (hypothesis), as
test_api_fuzz.py does for POST /jobs.

Whatever arrives: no 5xx and no internal detail in the body; a refusal is a 4xx in the one error
shape naming the field to change; and a refused task leaves nothing behind: no Batch job, no job
definition, no ledger record, no S3 object (a large task's runner document goes under work/tes/ in
the inputs bucket). An accepted task answers exactly {"id"} and is one record and one Batch job.
Derandomized and bounded (a few hundred examples in all), no per-example deadline.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api_lab import (ACCOUNT, INPUTS_BUCKET, READS, REFERENCE, REFERENCES_BUCKET, REGION, RESULTS_BUCKET, TABLE,
                     api_event)
from tests.api_tes_lab import BASE, IMAGE
from test_api_fuzz import _strings, check_answer, hostile_uris, invoke, json_values

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)
TASKS = BASE + "/tasks"
OUTPUTS = f"s3://{RESULTS_BUCKET}/tes/"
CONTENT_LIMIT = 256 * 1024
# What a client may set on a tesTask (TES 1.1); the read-only ones are ignored on create.
TASK_FIELDS = {"name", "description", "inputs", "outputs", "resources", "executors", "volumes", "tags"}


def snapshot(lab) -> tuple:
    """Everything a task could create, read from moto's backends and the buckets."""
    from moto.batch.models import batch_backends

    backend = batch_backends[ACCOUNT][REGION]
    objects = {bucket: sorted(o["Key"] for o in lab.s3.list_objects_v2(Bucket=bucket).get("Contents", []))
               for bucket in (INPUTS_BUCKET, REFERENCES_BUCKET, RESULTS_BUCKET)}
    items = lab.dynamodb.scan(TableName=TABLE, Select="COUNT", ConsistentRead=True)["Count"]
    return len(backend._jobs), len(backend._job_definitions), items, objects


def post_task(lab, body_text: str, sent: Any) -> tuple[int, Any]:
    """POST a task with this exact body and check the answer against the rules above."""
    before = snapshot(lab)
    status, text, _ = invoke(api_event("POST", TASKS, raw_body=body_text))
    body = check_answer(status, text, _strings(sent))
    if status == 200:
        assert set(body) == {"id"}, body
        after = snapshot(lab)
        assert (after[0], after[2]) == (before[0] + 1, before[2] + 1), "one Batch job and one record"
        return status, body
    assert 400 <= status < 500, text
    field = body["error"]["details"].get("field")
    assert isinstance(field, str) and field, body
    # A field of the task TES defines (one sent, or a required one missing), or the body itself.
    root = re.split(r"[.\[]", field, maxsplit=1)[0]
    assert field == "body" or root in TASK_FIELDS, (field, sent)
    assert snapshot(lab) == before, f"refused ({status}) but something was created: {text}"
    return status, body


def post_json(lab, payload: Any) -> tuple[int, Any]:
    return post_task(lab, json.dumps(payload), payload)


# --- strategies -------------------------------------------------------------------------------

def mostly(usual: Any, *others: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` (a value or a strategy) three times in four, else one of `others`: an example then
    breaks a rule or two, not all of them, and reaches the checks behind the first."""
    usual = usual if isinstance(usual, st.SearchStrategy) else st.just(usual)
    return st.sampled_from([usual] * 3 + [st.one_of(*others)]).flatmap(lambda strategy: strategy)


# Type-correct but hostile values, so most examples get past the model to the checks behind it.
paths = st.sampled_from([
    "/data/x", "/data/run/", "/", "relative/x", "", "/data/../etc/passwd", "/opt/labbatch/runner/x", "/scratch/x",
    "/scratch", "/data/a\u0000b", "/data/*.txt", "/data/[a-z]?.fq", "/" + "p" * 5000, "//x", "/tmp/./x", "~/x",
    "/data/\u00e9t\u00e9", "/data/a b",
]) | st.text(max_size=12).map(lambda t: "/data/" + t)
images = st.sampled_from([
    IMAGE, IMAGE, "labbatch-bwa:local", "quay.io/biocontainers/", "quay.io/biocontainers/x:1 ; rm -rf /",
    "quay.io/biocontainers/" + "a" * 300, "quay.io/biocontainers/x\n", "docker.io/evil/miner:1", "",
    "QUAY.IO/biocontainers/x", "quay.io/biocontainers/samtools@sha256:" + "0" * 64, "quay.io/biocontainers/../x",
]) | st.text(max_size=12).map(lambda t: "quay.io/biocontainers/" + t)
huge_text = st.sampled_from(["x" * CONTENT_LIMIT, "x" * (CONTENT_LIMIT + 1), "\u00e9" * (CONTENT_LIMIT // 2 + 1),
                             "y" * 400_000])
texts = st.text(max_size=20)
lab_urls = st.sampled_from([READS, REFERENCE, f"s3://{INPUTS_BUCKET}/runs/", f"s3://{INPUTS_BUCKET}/runs/r1",
                            f"s3://{INPUTS_BUCKET}/no/such/object", f"s3://{RESULTS_BUCKET}/tes/"]) | hostile_uris
executors = st.fixed_dictionaries(
    {"image": mostly(IMAGE, images), "command": st.lists(texts, min_size=1, max_size=4)},
    optional={"workdir": mostly("/data", paths), "stdin": paths, "stdout": paths, "stderr": paths,
              "env": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
              "ignore_error": st.booleans()},
)
inputs = st.fixed_dictionaries(
    {"path": mostly("/data/in", paths)},
    optional={"url": mostly(READS, lab_urls), "content": st.text(max_size=30) | huge_text,
              "type": st.sampled_from(["FILE", "DIRECTORY"]), "name": texts, "description": texts,
              "streamable": st.booleans()},
)
outputs = st.fixed_dictionaries(
    {"url": st.sampled_from([OUTPUTS + "a/b.txt", OUTPUTS, OUTPUTS + "../x", OUTPUTS + "a/../../x",
                             f"s3://{RESULTS_BUCKET}/jobs/x", f"s3://{INPUTS_BUCKET}/tes/x", "https://example.org/x",
                             "s3://"]) | hostile_uris,
     "path": mostly("/data/out.txt", paths)},
    optional={"path_prefix": paths, "type": st.sampled_from(["FILE", "DIRECTORY"]), "name": texts},
)
numbers = st.sampled_from([0, -1, 1, 2, 8, 9, 2**31, 10**30, 0.001, 0.5, 1.5, 30.0, 31.0, 1e308, 1e-300, -0.0])
resources = st.fixed_dictionaries({}, optional={
    "cpu_cores": st.sampled_from([0, -1, 1, 2, 8, 9, 64, 2**31, 10**30]), "ram_gb": numbers, "disk_gb": numbers,
    "preemptible": st.booleans(), "zones": st.lists(st.text(max_size=8), max_size=2),
    "backend_parameters": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    "backend_parameters_strict": st.booleans(),
})
VALID_EXECUTOR = {"image": IMAGE, "command": ["samtools", "faidx", "/data/ref.fa"]}
typed_tasks = st.fixed_dictionaries(
    {"executors": mostly(st.lists(executors, min_size=1, max_size=3),
                         st.sampled_from([[VALID_EXECUTOR] * 100, [VALID_EXECUTOR] * 101]))},
    optional={
        "inputs": mostly(st.lists(inputs, max_size=3),
                         st.just([{"content": "x", "path": f"/d/{i}"} for i in range(1001)])),
        "outputs": st.lists(outputs, max_size=3),
        "resources": resources,
        "volumes": st.lists(paths, max_size=3),
        "tags": st.dictionaries(texts, texts, max_size=3),
        "name": mostly("task", st.text(max_size=40), st.just("n" * 1025)),
        "description": mostly("about it", st.text(max_size=40), huge_text),
        # Read-only fields a client may echo back, and a key TES does not define: ignored.
        "id": texts, "state": st.sampled_from(["COMPLETE", "PAUSED"]), "logs": json_values, "extra": json_values,
    },
)
VALID_TASK = {
    "name": "valid", "description": "d", "tags": {"k": "v"}, "volumes": ["/vol/a"],
    "inputs": [{"url": REFERENCE, "path": "/data/ref.fa", "type": "FILE"}, {"content": "c", "path": "/data/c.txt"}],
    "outputs": [{"url": OUTPUTS + "ref.fa.fai", "path": "/data/ref.fa.fai"}],
    "resources": {"cpu_cores": 1, "ram_gb": 1, "disk_gb": 1, "preemptible": True, "zones": ["a"]},
    "executors": [{**VALID_EXECUTOR, "workdir": "/data", "env": {"A": "1"}, "stdout": "/data/o", "ignore_error": False}],
}
WHERE = [("name",), ("description",), ("tags",), ("tags", "k"), ("volumes",), ("volumes", 0), ("inputs",),
         ("inputs", 0), ("inputs", 0, "url"), ("inputs", 0, "path"), ("inputs", 0, "type"), ("inputs", 1, "content"),
         ("outputs",), ("outputs", 0, "url"), ("outputs", 0, "path"), ("resources",), ("resources", "cpu_cores"),
         ("resources", "ram_gb"), ("resources", "preemptible"), ("resources", "zones"), ("executors",),
         ("executors", 0), ("executors", 0, "image"), ("executors", 0, "command"), ("executors", 0, "command", 0),
         ("executors", 0, "env"), ("executors", 0, "env", "A"), ("executors", 0, "ignore_error"),
         ("executors", 0, "workdir")]


def _replaced(where: tuple, value: Any) -> dict:
    task = json.loads(json.dumps(VALID_TASK))
    parent = task
    for part in where[:-1]:
        parent = parent[part]
    parent[where[-1]] = value
    return task


# The valid task with one part of it of the wrong type (or null, or a nested document).
wrong_type_tasks = st.builds(_replaced, st.sampled_from(WHERE), json_values)


# --- the fuzz tests -----------------------------------------------------------------------------

def test_the_valid_task_the_fuzz_starts_from_is_accepted(tes_lab):
    assert post_json(tes_lab, VALID_TASK)[0] == 200


@settings(FUZZ, max_examples=150)
@given(payload=typed_tasks)
@example(payload={"executors": [VALID_EXECUTOR], "resources": {"ram_gb": 1e308}})
@example(payload={"executors": [VALID_EXECUTOR], "tags": {"a": "\udfff"}})
@example(payload={"executors": [{**VALID_EXECUTOR, "command": ["x" * 1000] * 400}]})
@example(payload={"executors": [VALID_EXECUTOR], "inputs": [{"content": "\u00e9" * (CONTENT_LIMIT // 2), "path": "/a"}],
                  "description": "d" * 4096})
@example(payload={"executors": [{**VALID_EXECUTOR, "image": "quay.io/biocontainers/x y"}]})
def test_near_valid_tasks_are_answered_safely(tes_lab, payload):
    post_json(tes_lab, payload)


@FUZZ
@given(payload=wrong_type_tasks)
def test_a_part_of_the_wrong_type_is_refused_naming_it(tes_lab, payload):
    post_json(tes_lab, payload)


@FUZZ
@given(payload=json_values)
def test_any_json_document_as_a_task(tes_lab, payload):
    post_json(tes_lab, payload)


@FUZZ
@given(text=st.text(max_size=200) | st.sampled_from([
    "", "{", "[" * 100_000 + "]" * 100_000, '{"executors": [{"image": "x", "command": ["a"]}], "resources": '
    '{"ram_gb": Infinity}}', '{"executors": NaN}', '{"a": ' + "9" * 5000 + "}"]))
def test_any_text_as_the_body(tes_lab, text):
    post_task(tes_lab, text, text)


def test_a_large_accepted_task_keeps_its_document_in_s3_and_a_refused_one_leaves_none(tes_lab):
    # The runner reads a task over 8 KiB from work/tes/ in the inputs bucket: it is there for an
    # accepted task, and never for a refused one, however far admission got.
    big = [{"content": "c" * 9000, "path": "/data/big.txt"}]
    status, body = post_json(tes_lab, {"executors": [VALID_EXECUTOR], "inputs": big})
    assert status == 200
    keys = [o["Key"] for o in tes_lab.s3.list_objects_v2(Bucket=INPUTS_BUCKET, Prefix="work/tes/")["Contents"]]
    assert keys == [f"work/tes/{body['id']}.json"]
    for refused in ({"executors": [VALID_EXECUTOR], "inputs": big + [{"url": f"s3://{INPUTS_BUCKET}/no/such",
                                                                       "path": "/data/x"}]},
                    {"executors": [VALID_EXECUTOR], "inputs": big, "resources": {"cpu_cores": 10_000}},
                    {"executors": [VALID_EXECUTOR], "inputs": big * 40}):
        status, answer = post_json(tes_lab, refused)
        assert status == 422, answer
