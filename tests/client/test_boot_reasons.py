"""`labbatch why` and `labbatch doctor` on a deployed lab whose instances never joined their
cluster (labbatch/client/boot_reasons.py), against moto's EC2 and ECS: the instances are found by the
tags the compute environments put on them, their consoles read, and a boot step's console line
becomes the reason. Local mode has no instances and says nothing.

moto's GetConsoleOutput answers one fixed text (moto.ec2.responses.general.SAMPLE_CONSOLE_OUTPUT,
a 2006 Xen boot log) for every instance; the tests that need a LabBatch line replace that text,
so the rest of the path (signing, moto's base64 answer, botocore's decoding) is the real one.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from labbatch.client import boot_reasons, cli, doctor
from labbatch_contract import names
from labbatch_contract.boot_reasons import COMPUTE_ENVIRONMENT_TAG, console_line

REGION = "us-east-1"
LAB = "example"
REASON = ("could not install the runner tree from 111122223333.dkr.ecr.us-east-1.amazonaws.com/cdk-assets:abc "
          "(3 tries): Error response from daemon: Get \"https://111122223333.dkr.ecr.us-east-1.amazonaws.com/v2/\": "
          "dial tcp 10.0.0.5:443: i/o timeout")


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def client(service: str):
    return boto3.client(service, region_name=REGION)


def console_says(monkeypatch, text: str) -> None:
    monkeypatch.setattr("moto.ec2.responses.general.SAMPLE_CONSOLE_OUTPUT", text)


def launch(lab: str = LAB, environment: str = "default/spot") -> str:
    ec2 = client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tags = [{"Key": names.LAB_TAG, "Value": lab}, {"Key": COMPUTE_ENVIRONMENT_TAG, "Value": environment}]
    reservation = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m6i.large",
                                    TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    return reservation["Instances"][0]["InstanceId"]


def view(desired_vcpus: int = 2, cluster: str | None = None) -> dict:
    cluster = cluster or client("ecs").create_cluster(clusterName="labbatch-spot_Batch_abc")["cluster"]["clusterArn"]
    environment = {"name": "SpotComputeEnvironment-abc", "state": "ENABLED", "status": "VALID", "type": "SPOT",
                   "max_vcpus": 16, "desired_vcpus": desired_vcpus, "instance_types": ["m6i.large"],
                   "ecs_cluster": cluster}
    on_demand = {**environment, "name": "OnDemandComputeEnvironment-abc", "type": "EC2", "desired_vcpus": 0}
    return {"lab": LAB, "queues": [
        {"queue": "spot", "pool": "default", "name": "labbatch-example-spot", "state": "ENABLED", "status": "VALID",
         "compute_environments": [environment, on_demand]},
        {"queue": "on-demand", "pool": "default", "name": "labbatch-example-on-demand", "state": "ENABLED",
         "status": "VALID", "compute_environments": [on_demand]}]}


def not_joined(lab_view: dict, **kwargs):
    return boot_reasons.instances_not_joined(LAB, boot_reasons.environments_of(lab_view), client, **kwargs)


def test_an_instance_whose_runner_tree_failed_is_reported_with_its_console_reason(aws, monkeypatch):
    instance = launch()
    console_says(monkeypatch, "[    2.11] systemd[1]: Detected virtualization amazon.\n"
                 + console_line("runner-tree", REASON) + "\r\n[FAILED] Failed to start labbatch-runner-tree.service.\n")
    (found,) = not_joined(view())
    assert found.instance_id == instance and found.compute_environment == "SpotComputeEnvironment-abc"
    assert found.message() == (f"instance {instance} of compute environment SpotComputeEnvironment-abc has not joined "
                               f"its cluster: boot step runner-tree failed: {REASON}")
    assert f"aws ec2 terminate-instances --instance-ids {instance}" in found.fix()


def test_a_fresh_instance_with_a_plain_console_is_still_booting_and_one_long_silent_is_reported(aws):
    instance = launch()  # moto's own console text: no LabBatch line
    assert not_joined(view()) == []
    (found,) = not_joined(view(), now=datetime.now(timezone.utc) + timedelta(minutes=15))
    assert found.instance_id == instance and found.failures == ()
    assert "has not joined its cluster 15 min after launch, and its console names no LabBatch boot failure" \
        in found.message()


def test_nothing_is_read_when_the_environment_wants_no_vcpus_or_an_instance_has_joined(aws, monkeypatch):
    launch()
    console_says(monkeypatch, console_line("runner-tree", REASON) + "\n")
    assert not_joined(view(desired_vcpus=0)) == []
    lab_view = view()
    cluster = lab_view["queues"][0]["compute_environments"][0]["ecs_cluster"]
    ecs = Stubber(boto3.client("ecs", region_name=REGION))  # moto cannot register an instance without its identity document
    ecs.add_response("list_container_instances", {"containerInstanceArns": [
        "arn:aws:ecs:us-east-1:123456789012:container-instance/labbatch-spot_Batch_abc/0123"]},
        {"cluster": cluster, "maxResults": 1})
    with ecs:
        found = boot_reasons.instances_not_joined(
            LAB, boot_reasons.environments_of(lab_view), lambda s: ecs.client if s == "ecs" else client(s))
    assert found == []


def test_another_labs_and_another_environments_instances_are_not_this_ones(aws, monkeypatch):
    launch(lab="genomics-core")
    launch(environment="default/on-demand")
    launch(environment="gpu/spot")
    console_says(monkeypatch, console_line("runner-tree", REASON) + "\n")
    assert not_joined(view()) == []


def test_a_refused_call_says_which_policy_to_attach(aws):
    ecs = Stubber(boto3.client("ecs", region_name=REGION))
    ecs.add_client_error("list_container_instances", "AccessDeniedException",
                         "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: "
                         "ecs:ListContainerInstances", 400)
    with ecs, pytest.raises(boot_reasons.BootLookupFailed) as refused:
        boot_reasons.instances_not_joined(LAB, boot_reasons.environments_of(view()), lambda service: ecs.client)
    assert "AccessDeniedException" in str(refused.value)
    assert f"attach the {names.diagnose_policy(LAB)} policy" in str(refused.value)


# --- the commands ---------------------------------------------------------------------------------


class FakeApi:
    """The job API as `why` and `doctor` read it: one RUNNABLE job and the lab's view."""

    def __init__(self, lab_view: dict, job: dict | None = None) -> None:
        self.view, self.job, self.lab_calls = lab_view, job, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def get(self, job_id: str) -> dict:
        return self.job

    def lab(self) -> dict:
        self.lab_calls += 1
        return self.view


class FakeConnection:
    def __init__(self, api: FakeApi, endpoint: str = "https://abc.execute-api.us-east-1.amazonaws.com/prod") -> None:
        self.api, self.endpoint, self.region, self.profile, self.credentials = api, endpoint, REGION, None, None
        self.found_by = "test"

    def client(self, **kwargs):
        return self.api


RUNNABLE = {"job_id": "j-01abc", "status": "RUNNABLE", "queue": "spot", "pipeline": "fastq-stats",
            "waiting_because": {"cause": "scaling_up", "message": "Queue labbatch-example-spot has room (0 of 16 vCPUs "
                                "in use) and Batch is starting an instance for it.", "fix": "Wait a few minutes.",
                                "waiting_seconds": 1500}}


def why(monkeypatch, capsys, api: FakeApi, *extra: str) -> str:
    monkeypatch.setattr("labbatch.client.command_base.resolve_connection", lambda **kwargs: FakeConnection(api))
    assert cli.main(["why", "j-01abc", *extra]) == 0
    return capsys.readouterr().out


def test_why_adds_the_instances_console_reason_to_a_runnable_jobs_explanation(aws, monkeypatch, capsys):
    instance = launch()
    console_says(monkeypatch, console_line("runner-tree", REASON) + "\n")
    lines = why(monkeypatch, capsys, FakeApi(view(), RUNNABLE)).splitlines()
    assert lines[:2] == ["j-01abc is RUNNABLE, waiting for 25 min.", f"Why: {RUNNABLE['waiting_because']['message']}"]
    assert lines[3] == (f"Also: instance {instance} of compute environment SpotComputeEnvironment-abc has not joined "
                        f"its cluster: boot step runner-tree failed: {REASON}")
    assert lines[4].startswith("Fix: it will never run jobs")


def test_why_json_carries_the_instances(aws, monkeypatch, capsys):
    import json

    instance = launch()
    console_says(monkeypatch, console_line("runner-tree", REASON) + "\n")
    answer = json.loads(why(monkeypatch, capsys, FakeApi(view(), RUNNABLE), "--json"))
    (found,) = answer["instances_not_joined"]
    assert found["instance_id"] == instance and found["failures"] == [{"step": "runner-tree", "reason": REASON}]


def test_why_on_a_local_lab_never_looks_for_instances(aws, monkeypatch, capsys):
    launch()
    console_says(monkeypatch, console_line("runner-tree", REASON) + "\n")
    monkeypatch.setattr("labbatch.client.sdk.local_lab_state", lambda endpoint: {"lab": LAB})
    api = FakeApi(view(), RUNNABLE)
    out = why(monkeypatch, capsys, api)
    assert "has not joined" not in out and "Instances:" not in out and api.lab_calls == 0


def test_why_says_it_could_not_look_without_the_diagnose_policy(monkeypatch, capsys):
    def refused(profile, region):
        def make(service):
            stub = Stubber(boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"))
            stub.add_client_error("list_container_instances", "AccessDeniedException", "not authorized", 400)
            stub.activate()
            return stub.client
        return make

    monkeypatch.setattr(boot_reasons, "aws_client_maker", refused)
    out = why(monkeypatch, capsys, FakeApi(view(cluster="arn:aws:ecs:us-east-1:123456789012:cluster/c"), RUNNABLE))
    assert out.splitlines()[-1] == ("Instances: not checked: could not read the lab's instances (AccessDeniedException: "
                                    f"not authorized); attach the {names.diagnose_policy(LAB)} policy to the identity "
                                    "you run this as")


def test_doctor_fails_on_an_instance_that_never_joined_and_names_the_reason(aws, monkeypatch):
    instance = launch()
    console_says(monkeypatch, console_line("runner-tree", REASON) + "\n")
    target = doctor.Target(FakeConnection(FakeApi(view())), None, LAB)
    checks: list[doctor.Check] = []
    doctor._boot_checks(target, lambda check: checks.append(check) or check)
    (check,) = checks
    assert not check.ok and check.name == f"instance {instance}"
    assert check.line().startswith(f"FAIL  instance {instance}: instance {instance} of compute environment "
                                   f"SpotComputeEnvironment-abc has not joined its cluster: boot step runner-tree failed: "
                                   "could not install the runner tree from")


def test_doctor_passes_when_no_instance_is_kept_out(aws):
    launch()
    target = doctor.Target(FakeConnection(FakeApi(view())), None, LAB)
    checks: list[doctor.Check] = []
    doctor._boot_checks(target, lambda check: checks.append(check) or check)
    assert [(c.name, c.ok) for c in checks] == [("instances joined", True)]


def test_doctor_on_a_local_lab_does_not_look_for_instances(monkeypatch):
    looked = []
    monkeypatch.setattr(doctor, "_boot_checks", lambda target, add: looked.append(target))
    monkeypatch.setattr("labbatch.client.command_base.resolve_connection", lambda **kwargs: FakeConnection(FakeApi(view(cluster="c"))))
    monkeypatch.setattr(doctor, "local_lab_state", lambda endpoint: {"lab": LAB, "executor": "host"})
    for name in ("_api_checks", "_batch_checks", "_image_checks"):
        monkeypatch.setattr(doctor, name, (lambda *a: {"queues": [], "pipelines": []}) if name == "_api_checks"
                            else (lambda *a: None))
    args = argparse.Namespace(endpoint=None, lab=LAB, profile=None, region=None, no_canary=True, json=False)
    doctor.diagnose(args, lambda check: None)
    assert looked == []
