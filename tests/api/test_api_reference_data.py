"""Submissions naming reference data as aligners need it: folders (an index directory) and companion
files (a FASTA's bwa index, a BAM's .bai), sized and checked before anything is written."""

from __future__ import annotations

import copy
import json

import pytest

from tests.api_lab import INPUTS_BUCKET, READS, READS_B, REFERENCES_BUCKET, SETTINGS, batch_environment

GIB = 1024**3
BWA = (".amb", ".ann", ".bwt", ".pac", ".sa")
INDEX = f"s3://{REFERENCES_BUCKET}/salmon/gencode-idx/"


@pytest.fixture
def ref_lab(lab, monkeypatch):
    """The example lab with `align` declaring bwa's index as the reference's companions and
    `.bai?` (optional) beside each input."""
    from labbatch_api import handler as job_api
    settings = copy.deepcopy(SETTINGS)
    settings["pipelines"]["align"]["secondary_files"] = {"param:reference": list(BWA), "inputs": [".bai?"]}
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps(settings))
    job_api.runtime.cache_clear()
    yield lab
    job_api.runtime.cache_clear()


def _reference(lab, name: str = "genomes/hg.fa", size: int = 1000, skip: tuple[str, ...] = ()) -> str:
    uri = f"s3://{REFERENCES_BUCKET}/{name}"
    lab.put_input(uri, size=size)
    for suffix in BWA:
        if suffix not in skip:
            lab.put_input(uri + suffix, size=size)
    return uri


def test_a_folder_parameter_is_admitted_and_sized_by_its_objects(lab):
    sizes = {"seq.bin": 3000, "pos.bin": 2000, "sub/info.json": 500}
    for name, size in sizes.items():
        lab.put_input(INDEX + name, size=size)
    lab.put_input(f"s3://{REFERENCES_BUCKET}/salmon/gencode-idx-old/seq.bin", size=10**6)  # a sibling, not inside

    answer = lab.submit({"pipeline": "align", "inputs": [READS], "parameters": {"reference": INDEX}})

    assert answer.status == 202, answer.body
    (record,) = lab.job_records()
    # The reads (1 KiB) x disk factor 4, plus the folder's objects once (reference data).
    assert record["scratch_needed_bytes"] == 1024 * 4 + sum(sizes.values())
    (job,) = lab.batch_jobs()
    assert json.loads(batch_environment(job)["LABBATCH_PARAMETERS"])["reference"] == INDEX


def test_a_folder_input_stages_every_object_under_it(lab):
    folder = f"s3://{INPUTS_BUCKET}/runs/flowcell-7/"
    for lane in range(3):
        lab.put_input(f"{folder}lane{lane}.fastq.gz", size=2048)

    answer = lab.submit({"pipeline": "fastq-stats", "inputs": [folder]})

    assert answer.status == 202, answer.body
    assert lab.job_records()[0]["input_bytes"] == 3 * 2048


@pytest.mark.parametrize(("folder", "code"), [
    (f"s3://{REFERENCES_BUCKET}/salmon/none-here/", "input_not_found"),
    (f"s3://{REFERENCES_BUCKET}/", "invalid_s3_uri"),
    ("s3://someone-elses-bucket/idx/", "input_outside_lab"),
    (f"s3://{REFERENCES_BUCKET}/salmon/../idx/", "invalid_s3_uri"),
])
def test_a_bad_folder_is_refused_naming_the_parameter(lab, folder, code):
    answer = lab.submit({"pipeline": "align", "inputs": [READS], "parameters": {"reference": folder}})

    assert answer.status == 422
    assert answer.error["code"] == code
    assert answer.error["details"]["field"] == "parameters.reference"
    lab.assert_nothing_created()


def test_a_folder_too_big_for_scratch_is_refused_saying_it_is_reference_data(lab, monkeypatch):
    from labbatch_api import admission
    # Scaled down so that no test writes 100 GiB: a "GiB" of 1 KiB, so the lab's scratch is 100 KiB.
    monkeypatch.setattr(admission, "GIB", 1024)
    scratch = SETTINGS["scratch_gib"] * 1024
    lab.put_input(INDEX + "huge.bin", size=scratch)

    answer = lab.submit({"pipeline": "align", "inputs": [READS], "parameters": {"reference": INDEX}})

    assert answer.status == 422
    assert answer.error["code"] == "scratch_too_small"
    assert "of reference data" in answer.error["message"]
    # The reads (1 "GiB") x 4 plus the index once: 104 against 100.
    assert answer.error["details"]["reference_gib"] == SETTINGS["scratch_gib"]
    assert answer.error["details"]["needed_gib"] == SETTINGS["scratch_gib"] + 4
    lab.assert_nothing_created()


def test_companions_are_sized_with_their_file(ref_lab):
    reference = _reference(ref_lab, size=1000)
    ref_lab.put_input(READS + ".bai", size=64)  # READS_B has no .bai: optional

    answer = ref_lab.submit({"pipeline": "align", "parameters": {"reference": reference},
                             "samples": [{"name": "a", "inputs": [READS]}, {"name": "b", "inputs": [READS_B]}]})

    assert answer.status == 202, answer.body
    (record,) = ref_lab.job_records()
    # Child a: its reads and their .bai x 4, plus the FASTA and its five index files once.
    assert record["scratch_needed_bytes"] == (1024 + 64) * 4 + 6 * 1000


def test_a_missing_companion_is_refused_naming_it_before_anything_runs(ref_lab):
    reference = _reference(ref_lab, skip=(".bwt",))

    answer = ref_lab.submit({"pipeline": "align", "inputs": [READS], "parameters": {"reference": reference}})

    assert answer.status == 422
    assert answer.error["code"] == "companion_missing"
    assert answer.error["details"] == {"field": "parameters.reference", "uri": reference + ".bwt", "pattern": ".bwt"}
    assert f"{reference}.bwt does not exist" in answer.error["message"]
    ref_lab.assert_nothing_created()


def test_companions_of_a_folder_are_refused(ref_lab):
    ref_lab.put_input(INDEX + "seq.bin")

    answer = ref_lab.submit({"pipeline": "align", "inputs": [READS], "parameters": {"reference": INDEX}})

    assert answer.status == 422
    assert answer.error["code"] == "secondary_files_on_folder"
    assert answer.error["details"]["field"] == "parameters.reference"
    ref_lab.assert_nothing_created()
