"""Many inputs in one folder are sized by listing it, not by a HEAD each; anything the listing
does not show is still HEADed, so a missing input is refused by name as before."""

from __future__ import annotations

from tests.api_lab import INPUTS_BUCKET, api_clients, aws_error, capture_calls, inject

FOLDER = "runs/big/"


def uris(lab, count: int, missing: int | None = None) -> list[str]:
    out = []
    for i in range(count):
        key = f"{FOLDER}s{i:04d}.fastq"
        if i != missing:
            lab.put_input(f"s3://{INPUTS_BUCKET}/{key}", size=100 + i)
        out.append(f"s3://{INPUTS_BUCKET}/{key}")
    return out


def test_an_array_over_one_folder_is_sized_by_one_listing(lab):
    heads = capture_calls(api_clients().s3, "HeadObject")
    lists = capture_calls(api_clients().s3, "ListObjectsV2")
    samples = [{"name": f"s{i}", "inputs": [u]} for i, u in enumerate(uris(lab, 40))]
    answer = lab.submit({"pipeline": "fastq-stats", "samples": samples})
    assert answer.status == 202, answer.body
    assert heads == [] and len(lists) == 1
    assert lab.job_records()[0]["input_bytes"] == 100 + 39  # the largest child's input, from the listing


def test_a_missing_input_among_many_is_still_refused_by_name(lab):
    samples = [{"name": f"s{i}", "inputs": [u]} for i, u in enumerate(uris(lab, 20, missing=7))]
    answer = lab.submit({"pipeline": "fastq-stats", "samples": samples})
    assert answer.status == 422
    assert answer.error["code"] == "input_not_found"
    assert answer.error["details"]["field"] == "samples[7].inputs[0]"
    lab.assert_nothing_created()


def test_a_refused_listing_falls_back_to_head(lab):
    inject(api_clients().s3, "ListObjectsV2", [aws_error("AccessDenied", 403, protocol="head")])
    heads = capture_calls(api_clients().s3, "HeadObject")
    samples = [{"name": f"s{i}", "inputs": [u]} for i, u in enumerate(uris(lab, 10))]
    answer = lab.submit({"pipeline": "fastq-stats", "samples": samples})
    assert answer.status == 202, answer.body
    assert len(heads) == 10
