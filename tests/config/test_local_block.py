"""The lab file's `local:` block: local images standing in for a lab's own, and pipelines scaled to
this machine. Local mode reads it (tests/local/test_local_block.py); deployed stacks never do
(tests/cdk/test_local_block.py)."""

from __future__ import annotations

import copy

import pytest
import yaml

from labbatch.lab.api_settings import handler_settings
from labbatch.lab.loader import LabConfigError, load_labs, parse_lab

from tests.conftest import LABS_DIR

CORE = yaml.safe_load((LABS_DIR / "genomics-core.yaml").read_text())
BWA = "quay.io/biocontainers/bwa:0.7.18--he4a0461_1"


def core_with(local) -> dict:
    data = copy.deepcopy(CORE)
    if local is ...:
        data.pop("local", None)
    else:
        data["local"] = local
    return data


def problems_of(data: dict) -> list[str]:
    with pytest.raises(LabConfigError) as exc:
        parse_lab(data, "labs/genomics-core.yaml")
    return exc.value.problems


def test_a_lab_without_the_block_has_no_stand_ins_and_keeps_its_requests():
    lab = parse_lab(core_with(...), "labs/genomics-core.yaml")
    assert lab.local.images == {} and lab.local.fit_to_machine is False


def test_genomics_core_maps_its_three_biocontainers_images_and_fits_the_machine():
    core = load_labs(LABS_DIR, only="genomics-core")[0]
    assert core.local.fit_to_machine is True
    assert core.local.images == {
        BWA: "labbatch-bwa:local",
        "quay.io/biocontainers/salmon:1.10.3--haf24da9_3": "labbatch-salmon:local",
        "quay.io/biocontainers/star:2.7.11b--h5ca1c30_5": "labbatch-star:local",
    }
    # Every image it maps is one a pipeline of the lab runs; the demo image keeps its own build, and
    # the GPU pipeline's image none (local mode refuses GPU jobs on a machine without an NVIDIA runtime).
    assert set(core.local.images) == {p.image for p in core.pipelines.values() if not p.gpus} - {"demo"}


def test_a_stand_in_for_an_image_no_pipeline_uses_is_refused_naming_the_field():
    [problem] = problems_of(core_with({"images": {"quay.io/biocontainers/bwa:0.7.17": "labbatch-bwa:local"}}))
    assert problem.startswith("labs/genomics-core.yaml: local: images key(s) 'quay.io/biocontainers/bwa:0.7.17': ")
    assert "no pipeline uses that image" in problem and BWA in problem  # what is allowed


@pytest.mark.parametrize("images", [{BWA: "Labbatch BWA"}, {BWA: ""}, {"not an image": "labbatch-bwa:local"}])
def test_a_stand_in_that_is_not_an_image_reference_is_refused(images):
    problems = problems_of(core_with({"images": images}))
    assert problems and all(p.startswith("labs/genomics-core.yaml: local.images: ") for p in problems)
    assert "not an image reference" in problems[0]


def test_unknown_keys_and_non_booleans_in_the_block_are_refused():
    [unknown] = problems_of(core_with({"fit": True}))
    assert unknown == "labs/genomics-core.yaml: local.fit: unknown key (allowed: images, fit_to_machine)"
    [wrong] = problems_of(core_with({"fit_to_machine": "maybe"}))
    assert wrong.startswith("labs/genomics-core.yaml: local.fit_to_machine: ") and "true or false" in wrong


def test_a_pipelines_problem_is_reported_as_its_own_not_as_an_unused_stand_in():
    data = core_with({"images": {BWA: "labbatch-bwa:local"}})
    data["pipelines"]["bwa-mem"]["vcpus"] = 0
    problems = problems_of(data)
    assert [p for p in problems if "pipelines.bwa-mem.vcpus" in p] and not [p for p in problems if "local" in p]


def test_the_deployed_settings_do_not_carry_the_block():
    with_block = parse_lab(CORE, "labs/genomics-core.yaml")
    without = parse_lab(core_with(...), "labs/genomics-core.yaml")
    assert with_block.local.images
    assert handler_settings(with_block, "111122223333", "eu-west-1") == handler_settings(without, "111122223333", "eu-west-1")
