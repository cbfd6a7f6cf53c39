"""Instance pools in the templates: each pool's environments, queues and launch template, GPU
pools on the ECS GPU image, GPU job definitions, and a one-pool lab that keeps its logical IDs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cdk.conftest import resources

# Every logical ID of labs/example.yaml's stacks as main (1583590, before pools) synthesizes them
# (plus resources added since, never renamed: NextflowAccessPolicy, BootDiagnosisPolicy):
# a one-pool lab must update in place, so none may be renamed (a rename replaces the resource).
BEFORE_POOLS = json.loads((Path(__file__).parent / "example_logical_ids.json").read_text())
GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
STANDARD_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"


def test_a_one_pool_lab_keeps_every_logical_id(synthesized):
    lab = synthesized["example"]
    for part in ("storage", "compute", "api", "operations"):
        assert sorted(getattr(lab, f"{part}_json")["Resources"]) == BEFORE_POOLS[part], part


def _environments(template: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources(template, "AWS::Batch::ComputeEnvironment").items()}


def _by_prefix(found: dict[str, dict], prefix: str) -> dict:
    [(_, value)] = [(k, v) for k, v in found.items() if k.startswith(prefix)]
    return value


def test_each_pool_has_its_own_environments_and_queues_with_stable_names(synthesized):
    t = synthesized["pools"].compute_json
    envs = _environments(t)
    gpu_spot = _by_prefix(envs, "BatchComputeGpuSpotComputeEnvironment")["ComputeResources"]
    assert gpu_spot["Type"] == "SPOT" and gpu_spot["MaxvCpus"] == 96
    assert gpu_spot["InstanceTypes"] == ["g5.xlarge", "g5.12xlarge"]
    highmem = _by_prefix(envs, "BatchComputeHighmemOnDemandComputeEnvironment")["ComputeResources"]
    assert highmem["InstanceTypes"] == ["r6i"] and highmem["MaxvCpus"] == 64
    assert not [k for k in envs if k.startswith("BatchComputeHighmemSpot")]  # spot_max_vcpus 0
    queues = {v["Properties"]["JobQueueName"]: v["Properties"] for v in resources(t, "AWS::Batch::JobQueue").values()}
    assert sorted(queues) == sorted(f"labbatch-pools-{q}" for q in (
        "spot", "on-demand", "highmem-spot", "highmem-on-demand", "gpu-spot", "gpu-on-demand"))
    # A pool's spot queue falls back to its own on-demand environment, never another pool's.
    gpu_spot_order = queues["labbatch-pools-gpu-spot"]["ComputeEnvironmentOrder"]
    order = [json.dumps(o["ComputeEnvironment"]) for o in sorted(gpu_spot_order, key=lambda o: o["Order"])]
    assert "BatchComputeGpuSpotComputeEnvironment" in order[0] and "BatchComputeGpuOnDemandComputeEnvironment" in order[1]


def test_gpu_pool_runs_the_ecs_gpu_image_resolved_at_deploy(synthesized):
    t = synthesized["pools"].compute_json
    envs = _environments(t)
    for prefix, parameter, image_type in (("BatchComputeGpuSpot", GPU_AMI_PARAMETER, "ECS_AL2023_NVIDIA"),
                                          ("BatchComputeSpot", STANDARD_AMI_PARAMETER, "ECS_AL2023")):
        [ec2_configuration] = _by_prefix(envs, prefix)["ComputeResources"]["Ec2Configuration"]
        assert ec2_configuration["ImageType"] == image_type
        ref = ec2_configuration["ImageIdOverride"]["Ref"]
        assert t["Parameters"][ref] == {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": parameter}


def test_each_pool_starts_from_its_own_launch_template_with_its_scratch(synthesized):
    t = synthesized["pools"].compute_json
    templates = {k: v["Properties"]["LaunchTemplateData"] for k, v in resources(t, "AWS::EC2::LaunchTemplate").items()}
    assert len(templates) == 3

    def volumes(prefix: str) -> dict[str, int]:
        data = _by_prefix(templates, prefix)
        return {d["DeviceName"]: d["Ebs"]["VolumeSize"] for d in data["BlockDeviceMappings"]}

    assert volumes("ScratchLaunchTemplate") == {"/dev/xvdb": 100, "/dev/xvda": 30}
    assert volumes("HighmemScratchLaunchTemplate") == {"/dev/xvdb": 500, "/dev/xvda": 30}
    assert volumes("GpuScratchLaunchTemplate") == {"/dev/xvdb": 200, "/dev/xvda": 100}  # the GPU image's root
    for prefix in ("Gpu", "Highmem"):
        launch_template = _by_prefix(_environments(t), f"BatchCompute{prefix}OnDemand")["ComputeResources"]["LaunchTemplate"]
        assert launch_template["LaunchTemplateId"]["Ref"].startswith(f"{prefix}ScratchLaunchTemplate")
        # Pinned to a version number, as the default pool's are, so a change reaches running environments.
        assert launch_template["Version"]["Fn::GetAtt"][1] == "LatestVersionNumber"


def test_gpu_pipeline_job_definition_asks_for_its_gpus(synthesized):
    t = synthesized["pools"].compute_json
    definitions = resources(t, "AWS::Batch::JobDefinition")
    requirements = {k: {r["Type"]: r["Value"] for r in v["Properties"]["ContainerProperties"]["ResourceRequirements"]}
                    for k, v in definitions.items()}
    basecall = _by_prefix(requirements, "Pipelinesbasecall")
    assert basecall == {"GPU": "1", "VCPU": "4", "MEMORY": "14000"}
    assert "GPU" not in _by_prefix(requirements, "Pipelinesalign")


def test_the_api_may_submit_to_every_pools_queue(synthesized):
    policies = json.dumps(resources(synthesized["pools"].api_json, "AWS::IAM::Policy"))
    for queue in ("pools-spot", "pools-on-demand", "pools-highmem-spot", "pools-gpu-spot", "pools-gpu-on-demand"):
        assert f"job-queue/labbatch-{queue}\"" in policies, queue


def test_a_nextflow_head_may_submit_to_every_pools_queue(synthesized):
    [policy] = [r for r in resources(synthesized["pools"].compute_json, "AWS::IAM::ManagedPolicy").values()
                if r["Properties"].get("ManagedPolicyName") == "labbatch-pools-nextflow"]
    text = json.dumps(policy["Properties"]["PolicyDocument"])
    queue_ids = [k for k in resources(synthesized["pools"].compute_json, "AWS::Batch::JobQueue")]
    assert len(queue_ids) == 6 and all(f'"{logical_id}"' in text for logical_id in queue_ids)
