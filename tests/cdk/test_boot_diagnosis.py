"""Why an instance never joined, readable off the instance (#24): every instance a compute
environment launches carries the lab's and its environment's tags (how labbatch/client/boot_reasons.py
finds it), a failed boot step writes its reason to the console, and the labbatch-<lab>-diagnose
policy grants exactly the reads `labbatch why`/`doctor` make, the console only on the lab's own
instances."""

from __future__ import annotations

import inspect
from fnmatch import fnmatchcase

import pytest

import labbatch.client.boot_reasons as client_side
from labbatch_contract import boot_reasons, names
from tests.cdk.conftest import resources
from tests.cdk.test_compute_stack import user_data, written_files
from tests.cdk.test_nextflow_access import ACCOUNT, REGION, as_list, resolve


def diagnose_policy(compute: dict) -> dict:
    (policy,) = [v for k, v in resources(compute, "AWS::IAM::ManagedPolicy").items() if k.startswith("BootDiagnosis")]
    return policy["Properties"]


@pytest.mark.parametrize("lab", ["example", "pools"])
def test_every_instance_is_tagged_with_its_lab_and_the_environment_the_client_looks_for(synthesized, lab):
    environments = resources(synthesized[lab].compute_json, "AWS::Batch::ComputeEnvironment")
    seen = set()
    for logical, environment in environments.items():
        compute = environment["Properties"]["ComputeResources"]
        tags = compute["Tags"]
        assert tags[names.LAB_TAG] == lab, logical
        pool, kind = tags[boot_reasons.COMPUTE_ENVIRONMENT_TAG].split("/")
        # The client knows an environment by its pool (GET /lab) and its Batch type.
        assert boot_reasons.KIND_OF_TYPE[compute["Type"]] == kind, logical
        assert boot_reasons.compute_environment_tag(pool, kind) == tags[boot_reasons.COMPUTE_ENVIRONMENT_TAG]
        seen.add((pool, kind))
    assert len(seen) == len(environments)  # one tag value per environment


def test_a_failed_boot_step_writes_its_reason_to_the_console_in_the_parsers_words(synthesized):
    result = written_files(user_data(synthesized["example"].compute_json))["/usr/local/sbin/labbatch-boot-result"]
    assert f"printf '{boot_reasons.console_format()}' \"$1\" \"$reason\"" in result
    assert "[ -c /dev/console ]" in result  # never a regular file where no console is
    assert result.rstrip().endswith("exit 0")  # a console that cannot be written never fails the unit's stop


def test_the_diagnose_policy_grants_what_the_client_calls_and_the_console_only_of_the_labs_instances(synthesized):
    compute = synthesized["example"].compute_json
    policy = diagnose_policy(compute)
    assert policy["ManagedPolicyName"] == names.diagnose_policy("example") == "labbatch-example-diagnose"
    statements = {s["Sid"]: {**s, "Action": as_list(s["Action"]),
                             "Resource": [resolve(r, compute) for r in as_list(s["Resource"])]}
                  for s in policy["PolicyDocument"]["Statement"]}
    assert {sid: (s["Action"], s["Resource"], s.get("Condition")) for sid, s in statements.items()} == {
        "ListJoinedInstances": (["ecs:ListContainerInstances"], [f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/*"], None),
        "FindLabInstances": (["ec2:DescribeInstances"], ["*"], None),
        "ReadLabInstanceConsoles": (["ec2:GetConsoleOutput"], [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*"],
                                    {"StringEquals": {f"aws:ResourceTag/{names.LAB_TAG}": "example"}}),
    }
    # Every call labbatch/client/boot_reasons.py makes is among them, and nothing that changes anything.
    text = inspect.getsource(client_side)
    for call, action in (("list_container_instances", "ecs:ListContainerInstances"),
                         ("describe_instances", "ec2:DescribeInstances"),
                         ("get_console_output", "ec2:GetConsoleOutput")):
        assert call in text and any(fnmatchcase(action, a) for s in statements.values() for a in s["Action"])
    assert all(a.split(":")[1].startswith(("List", "Describe", "Get")) for s in statements.values() for a in s["Action"])
