"""The settings document the CDK app hands both functions carries every field the contract declares."""

from __future__ import annotations

import pytest

from labbatch.lab import api_settings
from labbatch.lab.api_settings import handler_settings, lab_settings
from labbatch.lab.loader import load_lab
from labbatch_contract.settings import PipelineSettings
from tests.conftest import LABS_DIR

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def example():
    return load_lab(LABS_DIR / "example.yaml")


def test_every_pipeline_field_of_the_contract_comes_from_the_lab_file_or_is_computed(example):
    document = api_settings._document(example, ACCOUNT, REGION)
    for name, pipeline in example.pipelines.items():
        assert set(document["pipelines"][name]) == set(PipelineSettings.model_fields) - {"local"}
        settings = lab_settings(example, ACCOUNT, REGION).pipelines[name]
        assert (settings.vcpus, settings.memory_mib, settings.disk_factor) == (
            pipeline.vcpus, pipeline.memory_mib, pipeline.disk_factor)
        assert settings.shared_inputs == pipeline.shared_inputs


def test_a_contract_field_the_document_does_not_fill_fails_instead_of_vanishing(example, monkeypatch):
    class GrownPipelineSettings(PipelineSettings):
        max_array_size: int = 10_000

    monkeypatch.setattr(api_settings, "PipelineSettings", GrownPipelineSettings)
    with pytest.raises(ValueError, match="PipelineSettings.max_array_size"):
        handler_settings(example, ACCOUNT, REGION)


def test_the_local_block_stays_out_of_a_deployed_labs_settings(example):
    assert all("local" not in p for p in handler_settings(example, ACCOUNT, REGION)["pipelines"].values())
