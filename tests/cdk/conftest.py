from __future__ import annotations

import copy
from dataclasses import dataclass

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk.assertions import Template

from labbatch.lab.loader import load_labs, parse_lab
from stacks.lab import build_lab

from tests.conftest import LABS_DIR


@dataclass
class SynthesizedLab:
    storage: Template
    compute: Template
    storage_json: dict
    compute_json: dict
    api_json: dict
    operations_json: dict
    outdir: str = ""  # the cloud assembly, with its staged assets

    def templates(self) -> dict[str, dict]:
        return {"Storage": self.storage_json, "Compute": self.compute_json, "Api": self.api_json,
                "Operations": self.operations_json}


def example_data() -> dict:
    return yaml.safe_load((LABS_DIR / "example.yaml").read_text())


def variant_data() -> dict:
    """A lab exercising the other branches: an existing VPC, arm64 instances, spot only."""
    data = example_data()
    data["name"] = "variant"
    data["network"] = {"mode": "existing", "vpc_id": "vpc-0abc1234",
                       "subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
                       "availability_zones": ["us-west-2a", "us-west-2b"]}
    data["compute"] = {"instance_types": ["m7g.large", "m7g.xlarge"], "on_demand_max_vcpus": 0,
                       "spot_max_vcpus": 32}
    data["pipelines"]["align"]["default_queue"] = "spot"
    return data


def pools_data() -> dict:
    """The example lab with three pools: its own small one as `default`, a memory pool and a GPU pool."""
    data = copy.deepcopy(example_data())
    data["name"] = "pools"
    data["compute"] = {"pools": {
        "default": data["compute"],
        "highmem": {"instance_types": ["r6i"], "on_demand_max_vcpus": 64, "spot_max_vcpus": 0,
                    "scratch": {"size_gib": 500}},
        "gpu": {"instance_types": ["g5.xlarge", "g5.12xlarge"], "gpu": True, "on_demand_max_vcpus": 48,
                "spot_max_vcpus": 96, "scratch": {"size_gib": 200}},
    }}
    data["pipelines"]["basecall"] = {"image": "ontresearch/dorado:latest", "command": ["dorado", "basecaller",
                                     "hac", "{input}"], "vcpus": 4, "memory_mib": 14000, "gpus": 1, "pool": "gpu"}
    return data


def bigger_scratch_data() -> dict:
    data = copy.deepcopy(example_data())
    data["compute"]["scratch"]["size_gib"] = 200
    return data


def tes_data(name: str = "flow") -> dict:
    """A lab with a GA4GH TES endpoint (tes.allowed_images): named job roles, on-demand job definitions."""
    data = copy.deepcopy(example_data())
    data.update(name=name, tes={"allowed_images": ["quay.io/biocontainers/"]})
    return data


def kms_data(name: str = "vault") -> dict:
    """The compliance tier on LabBatch's own AMI and public network (so the root volume and every
    log group are there), with listed API principals; `vault-b` is a second KMS lab beside it."""
    data = copy.deepcopy(example_data())
    data.update(name=name, encryption="kms", audit=name == "vault")
    data["api"] = {"principals": ["arn:aws:iam::111122223333:role/VaultScientist", "arn:aws:iam::444455556666:root"]}
    return data


def _synth(context: dict, labs) -> dict[str, SynthesizedLab]:
    app = cdk.App(context=context)
    built = {lab.name: build_lab(app, lab) for lab in labs}
    assembly = app.synth()
    out = {}
    for name, stacks in built.items():
        out[name] = SynthesizedLab(
            storage=Template.from_stack(stacks.storage),
            compute=Template.from_stack(stacks.compute),
            storage_json=assembly.get_stack_by_name(stacks.storage.stack_name).template,
            compute_json=assembly.get_stack_by_name(stacks.compute.stack_name).template,
            api_json=assembly.get_stack_by_name(stacks.api.stack_name).template,
            operations_json=assembly.get_stack_by_name(stacks.operations.stack_name).template,
            outdir=assembly.directory,
        )
    return out


@pytest.fixture(scope="session")
def synthesized(cdk_context) -> dict[str, SynthesizedLab]:
    labs = load_labs(LABS_DIR) + [parse_lab(variant_data(), "variant.yaml"), parse_lab(pools_data(), "pools.yaml")]
    return _synth(cdk_context, labs)


@pytest.fixture(scope="session")
def synthesized_kms(cdk_context) -> dict[str, SynthesizedLab]:
    return _synth(cdk_context, [parse_lab(kms_data("vault"), "vault.yaml"), parse_lab(kms_data("vault-b"), "vault-b.yaml")])


@pytest.fixture(scope="session")
def synthesized_bigger_scratch(cdk_context) -> SynthesizedLab:
    return _synth(cdk_context, [parse_lab(bigger_scratch_data(), "example.yaml")])["example"]


def resources(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def only(template: dict, cfn_type: str) -> tuple[str, dict]:
    found = resources(template, cfn_type)
    assert len(found) == 1, f"expected one {cfn_type}, found {sorted(found)}"
    return next(iter(found.items()))
