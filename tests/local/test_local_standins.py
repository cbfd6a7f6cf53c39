"""What local mode makes of a lab file's `local:` block, without starting a lab: the settings the
handlers get, the job definitions it registers, the images its containers run, and the words it
prints. The whole path, started as a user starts it: tests/e2e/test_local_block.py."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from labbatch.client.tables import pipelines_table as _pipelines_table
from labbatch_contract.batch_container import container_for
from labbatch.lab.loader import parse_lab
from labbatch.local import lab as local_lab
from labbatch.local.command import local_mode_lines
from labbatch.local.docker_runner import DEMO_TAG, ContainerRunner
from labbatch_contract.settings import LabSettings

ROOT = Path(__file__).resolve().parents[2]
CORE = yaml.safe_load((ROOT / "labs" / "genomics-core.yaml").read_text())
BWA = "quay.io/biocontainers/bwa:0.7.18--he4a0461_1"
EMULATED = SimpleNamespace(account="123456789012", region="eu-west-1")


@pytest.fixture(autouse=True)
def small_machine(monkeypatch):
    """4 cores and 16 GiB: (16,384 - 512) x 0.95 = 15,078 MiB for a job."""
    monkeypatch.setattr(local_lab.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(local_lab, "machine_memory_mib", lambda: 16_384)


def core(**local) -> object:
    data = copy.deepcopy(CORE)
    data["local"] = {**data["local"], **local}
    return parse_lab(data, "labs/genomics-core.yaml")


def test_fit_to_machine_scales_only_what_exceeds_the_machine():
    assert local_lab.fitted_to_machine(core()) == {
        "bwa-mem": {"vcpus": 4, "memory_mib": 15_078},
        "salmon-quant": {"vcpus": 4, "memory_mib": 15_078},
        "star-align": {"vcpus": 4, "memory_mib": 15_078},
    }
    assert local_lab.fitted_to_machine(core(fit_to_machine=False)) == {}


def test_the_handlers_settings_carry_the_scaled_defaults_and_say_so_and_still_load():
    settings = local_lab.local_settings(core(), EMULATED)
    bwa = settings["pipelines"]["bwa-mem"]
    assert (bwa["vcpus"], bwa["memory_mib"]) == (4, 15_078)
    assert bwa["local"] == {"image": BWA, "stand_in": "labbatch-bwa:local", "lab_vcpus": 16, "lab_memory_mib": 60000}
    assert "local" not in settings["pipelines"]["fastq-stats"]
    LabSettings.model_validate(settings)  # what the handler and the status updater read it with


def test_without_fit_the_lab_files_requests_stand_and_only_the_stand_in_is_said():
    settings = local_lab.local_settings(core(fit_to_machine=False), EMULATED)
    bwa = settings["pipelines"]["bwa-mem"]
    assert (bwa["vcpus"], bwa["memory_mib"]) == (16, 60000)
    assert bwa["local"] == {"image": BWA, "stand_in": "labbatch-bwa:local"}


def test_the_job_definitions_registered_locally_agree_and_keep_the_labs_images():
    definitions = {d.pipeline: d for d in local_lab.local_layout(core()).job_definitions}
    assert (definitions["bwa-mem"].vcpus, definitions["bwa-mem"].memory_mib) == (4, 15_078)
    assert (definitions["fastq-stats"].vcpus, definitions["fastq-stats"].memory_mib) == (1, 2048)
    assert definitions["bwa-mem"].image == BWA


def test_the_container_runner_runs_the_stand_in(tmp_path):
    lab = core()
    runner = ContainerRunner("docker", tmp_path, images={"demo": DEMO_TAG, **local_lab.stand_ins(lab)})
    definition = {"containerProperties": {"image": BWA, "command": ["bwa"], "resourceRequirements": [
        {"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "15078"}]}}
    spec = runner.spec(container_for(definition), scratch=tmp_path, name="n")
    assert spec.image == "labbatch-bwa:local" and spec.create_argv[-2:] == ["labbatch-bwa:local", "bwa"]
    assert runner.local_image("demo") == DEMO_TAG and runner.local_image("ubuntu:24.04") == "ubuntu:24.04"


def test_the_words_on_stderr_name_both_changes():
    info = {"executor": "docker", "stand_ins": {BWA: "labbatch-bwa:local"},
            "fitted_to_machine": {"bwa-mem": {"from": {"vcpus": 16, "memory_mib": 60000},
                                              "to": {"vcpus": 4, "memory_mib": 15078}}}}
    assert local_mode_lines(info) == [
        f"local images stand in in docker containers: {BWA} -> labbatch-bwa:local",
        "pipelines scaled to this machine (local.fit_to_machine): bwa-mem 16 -> 4 vCPUs, 60,000 -> 15,078 MiB"]
    assert local_mode_lines({"executor": "host", "stand_ins": {}, "fitted_to_machine": {}}) == []


def test_labbatch_pipelines_has_no_local_column_for_a_deployed_lab():
    deployed = [{"name": "p", "defaults": {"vcpus": 1}, "limits": {}, "parameters": {}}]
    assert [c.header for c in _pipelines_table(deployed).columns][-1] == "parameters"
    local = [{**deployed[0], "local": {"image": BWA, "stand_in": "labbatch-bwa:local"}}]
    assert [c.header for c in _pipelines_table(local).columns][-1] == "local mode"
