"""The compute stack: network, scratch launch template, compute environments, queues, pipelines."""

from __future__ import annotations

import json

import pytest

from tests.cdk.conftest import only, resources

SSM_AL2023 = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
SSM_AL2023_ARM = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"


def compute_environments(template: dict) -> dict[str, dict]:
    """The pool `default`'s environments (a one-pool lab's only ones), by kind."""
    return {("spot" if k.startswith("BatchComputeSpot") else "on-demand"): v["Properties"]
            for k, v in resources(template, "AWS::Batch::ComputeEnvironment").items()
            if k.startswith(("BatchComputeSpotComputeEnvironment", "BatchComputeOnDemandComputeEnvironment"))}


def every_compute_environment(template: dict) -> dict[str, dict]:
    """Every pool's environments, by logical ID."""
    return {k: v["Properties"] for k, v in resources(template, "AWS::Batch::ComputeEnvironment").items()}


def queues(template: dict) -> dict[str, dict]:
    return {v["Properties"]["JobQueueName"]: v["Properties"]
            for v in resources(template, "AWS::Batch::JobQueue").values()}


def job_definitions(template: dict) -> dict[str, dict]:
    return {v["Properties"]["JobDefinitionName"]: v["Properties"]
            for v in resources(template, "AWS::Batch::JobDefinition").values()}


# --- network ---------------------------------------------------------------------------------

def test_vpc_logs_rejected_traffic(synthesized):
    _, flow_log = only(synthesized["example"].compute_json, "AWS::EC2::FlowLog")
    assert flow_log["Properties"]["TrafficType"] == "REJECT"
    assert resources(synthesized["variant"].compute_json, "AWS::EC2::FlowLog") == {}  # not our VPC


def test_public_network_has_no_nat_and_a_free_s3_gateway_endpoint(synthesized):
    t = synthesized["example"].compute_json
    assert resources(t, "AWS::EC2::NatGateway") == {}
    _, endpoint = only(t, "AWS::EC2::VPCEndpoint")
    assert endpoint["Properties"]["VpcEndpointType"] == "Gateway"
    assert "s3" in json.dumps(endpoint["Properties"]["ServiceName"])
    assert resources(t, "AWS::EC2::VPCEndpoint").keys() == {next(iter(resources(t, "AWS::EC2::VPCEndpoint")))}


def test_private_nat_network_puts_instances_in_private_subnets(synthesized):
    t = synthesized["genomics-core"].compute_json
    assert len(resources(t, "AWS::EC2::NatGateway")) == 3
    for env in compute_environments(t).values():
        subnets = [s["Ref"] for s in env["ComputeResources"]["Subnets"]]
        assert len(subnets) == 3 and all("private" in s for s in subnets)


def test_existing_network_uses_the_given_subnets_without_creating_a_vpc(synthesized):
    t = synthesized["variant"].compute_json
    assert resources(t, "AWS::EC2::VPC") == {}
    [env] = compute_environments(t).values()
    assert env["ComputeResources"]["Subnets"] == ["subnet-0aaa1111", "subnet-0bbb2222"]


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_instance_security_group_has_no_inbound_rules(synthesized, lab):
    t = synthesized[lab].compute_json
    _, group = only(t, "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    assert resources(t, "AWS::EC2::SecurityGroupIngress") == {}


def test_zones_come_from_the_lab_file_when_account_and_region_are_pinned(synthesized):
    t = synthesized["genomics-core"].compute_json
    zones = sorted(s["Properties"]["AvailabilityZone"] for s in resources(t, "AWS::EC2::Subnet").values())
    assert zones == ["eu-west-1a", "eu-west-1a", "eu-west-1b", "eu-west-1b", "eu-west-1c", "eu-west-1c"]


# --- scratch launch template ----------------------------------------------------------------

def default_launch_template(template: dict) -> tuple[str, dict]:
    """The pool `default`'s launch template (a one-pool lab's only one)."""
    [(logical_id, lt)] = [(k, v) for k, v in resources(template, "AWS::EC2::LaunchTemplate").items()
                          if k.startswith("ScratchLaunchTemplate")]
    return logical_id, lt


def launch_template_data(template: dict) -> dict:
    return default_launch_template(template)[1]["Properties"]["LaunchTemplateData"]


def test_scratch_volume_is_encrypted_gp3_sized_from_config(synthesized):
    data = launch_template_data(synthesized["genomics-core"].compute_json)
    scratch = dict(next(d for d in data["BlockDeviceMappings"] if d["DeviceName"] == "/dev/xvdb")["Ebs"])
    # genomics-core encrypts with its own key (encryption: kms): the parameter its storage stack fills.
    key = scratch.pop("KmsKeyId")
    assert synthesized["genomics-core"].compute_json["Parameters"][key["Ref"]]["Default"] == \
        "/labbatch/genomics-core/kms-key-arn"
    assert scratch == {"DeleteOnTermination": True, "Encrypted": True, "Iops": 16000,
                       "Throughput": 1000, "VolumeSize": 1000, "VolumeType": "gp3"}


def test_default_ami_gets_an_encrypted_root_volume_custom_ami_keeps_its_own(synthesized):
    example = launch_template_data(synthesized["example"].compute_json)["BlockDeviceMappings"]
    assert {d["DeviceName"] for d in example} == {"/dev/xvda", "/dev/xvdb"}
    assert all(d["Ebs"]["Encrypted"] for d in example)
    core = launch_template_data(synthesized["genomics-core"].compute_json)["BlockDeviceMappings"]
    assert {d["DeviceName"] for d in core} == {"/dev/xvdb"}


def test_launch_template_requires_imdsv2_and_keeps_containers_off_instance_metadata(synthesized):
    options = launch_template_data(synthesized["example"].compute_json)["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] == 1


def _flat(node) -> str:
    """CloudFormation intrinsics as readable text: joins joined, Subs and Refs shown by name."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "".join(_flat(n) for n in node)
    (function, argument), = node.items()
    if function == "Fn::Join":
        return _flat(argument[0]).join(_flat(n) for n in argument[1])
    if function == "Fn::Sub":
        return argument if isinstance(argument, str) else argument[0]
    if function == "Ref":
        return "${" + argument + "}"
    if function == "Fn::Base64":
        return _flat(argument)
    return json.dumps(node)


def user_data(template: dict) -> str:
    """The MIME document with its base64 parts shown as CloudFormation will encode them."""
    return _flat(launch_template_data(template)["UserData"])


def test_user_data_is_mime_multipart_and_mounts_scratch(synthesized):
    text = user_data(synthesized["example"].compute_json)
    assert "Content-Type: multipart/mixed; boundary=" in text
    assert "Content-Type: text/x-shellscript" in text
    assert "mkfs.xfs -q \"$dev\"" in text and "mount -o noatime \"$dev\" /scratch" in text
    assert "size_bytes=$(( 100 * 1024 * 1024 * 1024 ))" in text
    # Idempotent, because the unit runs on every boot: the fstab line mounts it first.
    assert "if ! mountpoint -q /scratch; then" in text
    assert "grep -q ' /scratch xfs ' /etc/fstab || echo \"UUID=$uuid /scratch xfs defaults,noatime,nofail 0 2\"" in text
    # Docker keeps its image storage on the root volume.
    assert "/var/lib/docker" not in text


def test_user_data_makes_the_reference_cache_on_the_scratch_volume_after_mounting_it(synthesized):
    text = user_data(synthesized["example"].compute_json)
    # Where every job's runner looks for it: its scratch directory (/scratch) + labbatch-cache.
    made = text.index("mkdir -p /scratch/labbatch-cache")
    assert text.index("mount -o noatime \"$dev\" /scratch") < made
    assert "chmod 1777 /scratch/labbatch-cache" in text
    assert "evicted" in text  # the template says how it is bounded


def written_files(text: str) -> dict[str, str]:
    """The files the user data writes with `cat > PATH <<'LABBATCH_EOF'` here-documents."""
    files = {}
    for chunk in text.split("cat > ")[1:]:
        head, _, rest = chunk.partition(" <<'LABBATCH_EOF'\n")
        files[head] = rest.partition("LABBATCH_EOF\n")[0]
    return files


def unit_lines(unit: str) -> set[str]:
    return {line for line in unit.splitlines() if "=" in line}


@pytest.mark.parametrize("lab", ["example", "variant"])
def test_boot_steps_are_units_enabled_without_blocking_never_a_synchronous_start(synthesized, lab):
    """The AL2023 ECS AMI orders docker.service and ecs.service after cloud-final.service, which
    runs the user data: a `systemctl start` (or restart) of either from user data waits for itself.
    tests/rehearsal boots this user data and shows both the old hang and the new order."""
    text = user_data(synthesized[lab].compute_json)
    shell = text[text.index("#!/bin/bash"):]
    script = shell.split("LABBATCH_EOF")[::2]  # the user data's own lines, without the files it writes
    own = "".join(script)
    assert "systemctl enable --now --no-block labbatch-scratch.service labbatch-runner-tree.service" in own
    for forbidden in ("systemctl start", "systemctl restart", "systemctl mask"):
        assert forbidden not in text, forbidden
    files = written_files(text)
    scratch = unit_lines(files["/etc/systemd/system/labbatch-scratch.service"])
    tree = unit_lines(files["/etc/systemd/system/labbatch-runner-tree.service"])
    for unit in (scratch, tree):
        assert {"Type=oneshot", "RemainAfterExit=yes", "Before=ecs.service", "RequiredBy=ecs.service",
                "ExecStopPost=/usr/local/sbin/labbatch-boot-result " + ("scratch" if unit is scratch else "runner-tree")
                } <= unit
    # The tree needs Docker and comes after the scratch volume; the scratch volume needs neither.
    assert {"After=docker.service", "Requires=docker.service", "After=labbatch-scratch.service",
            "Requires=labbatch-scratch.service"} <= tree
    assert not any(line.startswith(("After=", "Requires=")) for line in scratch)
    # Spot draining is configured before the agent starts (cloud-final runs before it).
    assert "echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config" in own


# --- AMI and compute environments -----------------------------------------------------------

def ssm_parameter_defaults(template: dict) -> list[str]:
    return [p["Default"] for p in template.get("Parameters", {}).values()
            if p["Type"].startswith("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>")]


def test_default_ami_is_ecs_al2023_resolved_at_deploy(synthesized):
    t = synthesized["example"].compute_json
    assert ssm_parameter_defaults(t) == [SSM_AL2023]
    for env in compute_environments(t).values():
        [config] = env["ComputeResources"]["Ec2Configuration"]
        assert config["ImageType"] == "ECS_AL2023"
        assert "Ref" in config["ImageIdOverride"]


def test_arm64_lab_gets_the_arm64_image(synthesized):
    assert ssm_parameter_defaults(synthesized["variant"].compute_json) == [SSM_AL2023_ARM]


def test_custom_ami_is_used_as_given(synthesized):
    t = synthesized["genomics-core"].compute_json
    # Its GPU pool names no AMI: the ECS GPU image, resolved at deploy; its other pools use the given one.
    assert ssm_parameter_defaults(t) == ["/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"]
    for logical_id, env in every_compute_environment(t).items():
        if logical_id.startswith("BatchComputeGpu"):
            continue
        assert env["ComputeResources"]["Ec2Configuration"] == [
            {"ImageIdOverride": "ami-0123456789abcdef0", "ImageType": "ECS_AL2023"}], logical_id


def test_compute_environments_scale_from_zero_with_updatable_strategies(synthesized):
    envs = compute_environments(synthesized["example"].compute_json)
    on_demand, spot = envs["on-demand"]["ComputeResources"], envs["spot"]["ComputeResources"]
    assert on_demand["Type"] == "EC2" and on_demand["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"
    assert spot["Type"] == "SPOT" and spot["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert on_demand["MinvCpus"] == 0 and spot["MinvCpus"] == 0
    assert on_demand["MaxvCpus"] == 16 and spot["MaxvCpus"] == 64
    assert on_demand["InstanceTypes"] == ["m6i.large", "m6i.xlarge", "m6i.2xlarge"]
    core = compute_environments(synthesized["genomics-core"].compute_json)
    assert core["spot"]["ComputeResources"]["AllocationStrategy"] == "SPOT_CAPACITY_OPTIMIZED"


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_compute_environments_use_the_service_linked_role_and_update_in_place(synthesized, lab):
    for env in every_compute_environment(synthesized[lab].compute_json).values():
        assert "ServiceRole" not in env
        assert env["ReplaceComputeEnvironment"] is False
        assert env["ComputeResources"]["UpdateToLatestImageVersion"] is True


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_compute_environments_pin_the_launch_template_version_number(synthesized, lab):
    t = synthesized[lab].compute_json
    templates = set(resources(t, "AWS::EC2::LaunchTemplate"))
    for logical_id, env in every_compute_environment(t).items():
        spec = env["ComputeResources"]["LaunchTemplate"]
        lt_id = spec["LaunchTemplateId"]["Ref"]
        # Its own pool's template: the pool `default`'s for BatchComputeSpot..., GpuScratch... for BatchComputeGpu...
        assert lt_id in templates and lt_id.startswith(logical_id[len("BatchCompute"):].split("Spot")[0]
                                                       .split("OnDemand")[0] + "ScratchLaunchTemplate")
        assert spec["Version"] == {"Fn::GetAtt": [lt_id, "LatestVersionNumber"]}
        assert spec["Version"] not in ("$Latest", "$Default")


def test_changed_scratch_size_changes_the_version_the_environments_name(synthesized, synthesized_bigger_scratch):
    before, after = synthesized["example"].compute_json, synthesized_bigger_scratch.compute_json
    lt_before, data_before = only(before, "AWS::EC2::LaunchTemplate")
    lt_after, data_after = only(after, "AWS::EC2::LaunchTemplate")
    # Same resource updated in place (a new version), not replaced...
    assert lt_before == lt_after
    size = lambda d: next(b["Ebs"]["VolumeSize"] for b in d["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"]
                          if b["DeviceName"] == "/dev/xvdb")
    assert (size(data_before), size(data_after)) == (100, 200)
    # ...and the environments name that template's latest version number, so they follow it.
    for env in compute_environments(after).values():
        assert env["ComputeResources"]["LaunchTemplate"]["Version"] == {"Fn::GetAtt": [lt_after, "LatestVersionNumber"]}


def test_spot_only_lab_has_no_on_demand_environment_or_queue(synthesized):
    t = synthesized["variant"].compute_json
    assert set(compute_environments(t)) == {"spot"}
    assert set(queues(t)) == {"labbatch-variant-spot"}


# --- queues -----------------------------------------------------------------------------------

def test_spot_queue_falls_back_to_on_demand(synthesized):
    t = synthesized["example"].compute_json
    ids = {("spot" if "Spot" in k else "on-demand"): k for k in resources(t, "AWS::Batch::ComputeEnvironment")}
    order = queues(t)["labbatch-example-spot"]["ComputeEnvironmentOrder"]
    assert [(o["Order"], o["ComputeEnvironment"]["Fn::GetAtt"][0]) for o in order] == [
        (1, ids["spot"]), (2, ids["on-demand"])]
    od = queues(t)["labbatch-example-on-demand"]["ComputeEnvironmentOrder"]
    assert [o["ComputeEnvironment"]["Fn::GetAtt"][0] for o in od] == [ids["on-demand"]]
    assert queues(t)["labbatch-example-on-demand"]["Priority"] > queues(t)["labbatch-example-spot"]["Priority"]


@pytest.mark.parametrize("queue", ["labbatch-example-spot", "labbatch-example-on-demand"])
def test_queues_cancel_jobs_that_can_never_be_placed(synthesized, queue):
    limits = {a["Reason"]: a for a in queues(synthesized["example"].compute_json)[queue]["JobStateTimeLimitActions"]}
    for reason in ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"):
        assert limits[reason] == {"Action": "CANCEL", "MaxTimeSeconds": 1800, "Reason": reason, "State": "RUNNABLE"}
    assert limits["CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"]["MaxTimeSeconds"] == 6 * 3600


# --- pipelines --------------------------------------------------------------------------------

def test_one_job_definition_per_pipeline(synthesized):
    assert set(job_definitions(synthesized["example"].compute_json)) == {
        "labbatch-example-fastq-stats", "labbatch-example-align"}
    assert set(job_definitions(synthesized["genomics-core"].compute_json)) == {
        "labbatch-genomics-core-fastq-stats", "labbatch-genomics-core-bwa-mem",
        "labbatch-genomics-core-salmon-quant", "labbatch-genomics-core-star-align", "labbatch-genomics-core-basecall"}


def lab_config(lab: str):
    from labbatch.lab.loader import load_lab, parse_lab
    from tests.cdk.conftest import variant_data
    from tests.conftest import LABS_DIR

    return parse_lab(variant_data(), "variant.yaml") if lab == "variant" else load_lab(LABS_DIR / f"{lab}.yaml")


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_every_job_definition_runs_the_pipeline_image_unmodified_through_the_mounted_runner(synthesized, lab):
    from labbatch.lab.batch_layout import runner_launch

    config = lab_config(lab)
    launch = list(runner_launch(config.compute.architecture))
    for pipeline_name, pipeline in config.pipelines.items():
        jd = job_definitions(synthesized[lab].compute_json)[f"labbatch-{lab}-{pipeline_name}"]
        container = jd["ContainerProperties"]
        # The runner comes from the read-only mount, through its own loader: nothing of it is
        # needed in the image, and the image's entrypoint is not overridden (Batch cannot).
        assert container["Command"] == launch + pipeline.command, pipeline_name
        assert launch[0].startswith("/opt/labbatch/runner/") and "labbatch-runner" not in container["Command"][:1]
        assert "EntryPoint" not in container
        if pipeline.image != "demo":
            assert container["Image"] == pipeline.image
        assert sorted(container["MountPoints"], key=lambda m: m["SourceVolume"]) == [
            {"ContainerPath": "/opt/labbatch/runner", "ReadOnly": True, "SourceVolume": "labbatch-runner"},
            {"ContainerPath": "/scratch", "ReadOnly": False, "SourceVolume": "scratch"}]
        assert sorted(container["Volumes"], key=lambda v: v["Name"]) == [
            {"Host": {"SourcePath": "/opt/labbatch/runner"}, "Name": "labbatch-runner"},
            {"Host": {"SourcePath": "/scratch"}, "Name": "scratch"}]
        assert {"Name": "LABBATCH_SCRATCH_DIR", "Value": "/scratch"} in container["Environment"]


@pytest.mark.parametrize("lab", ["example", "genomics-core", "variant"])
def test_a_job_reserves_exactly_its_pipeline_vcpus_and_memory(synthesized, lab):
    """One container per job: the sum of every container's reservation is the pipeline's own."""
    config = lab_config(lab)
    for pipeline_name, pipeline in config.pipelines.items():
        jd = job_definitions(synthesized[lab].compute_json)[f"labbatch-{lab}-{pipeline_name}"]
        containers = [jd["ContainerProperties"]] if "ContainerProperties" in jd else [
            c for task in jd["EcsProperties"]["TaskProperties"] for c in task["Containers"]]
        total = {"VCPU": 0, "MEMORY": 0, "GPU": 0}
        for container in containers:
            for requirement in container["ResourceRequirements"]:
                total[requirement["Type"]] += int(requirement["Value"])
        assert total == {"VCPU": pipeline.vcpus, "MEMORY": pipeline.memory_mib, "GPU": pipeline.gpus}, pipeline_name


@pytest.mark.parametrize("lab", ["example", "variant"])
def test_instances_unpack_the_runner_image_before_the_ecs_agent_starts(synthesized, lab):
    template = synthesized[lab].compute_json
    text = user_data(template)
    install = written_files(text)["/usr/local/sbin/labbatch-runner-tree"]
    assert "labbatch_runner_tree()" in install and "mount -o noatime" not in install
    assert "docker-credential-ecr-login" in install and "ecr-login" in install
    assert 'docker export "$container" | tar -x -C "$tree.new"' in install
    assert 'mv "$tree.new" "$tree"' in install and 'tree="/opt/labbatch/runner"' in install
    # The image is the runner asset, pulled from the lab's account and Region at boot.
    assert ".dkr.ecr.${AWS::Region}." in install and "cdk-hnb659fds-container-assets-${AWS::AccountId}" in install
    # A failed install fails the unit ecs.service requires, with a reason kept for `labbatch why`.
    assert 'labbatch_boot_failed "could not install the runner tree from' in install
    assert "> /var/lib/labbatch/boot/runner-tree.failed" in install


def test_job_definition_resources_timeout_and_command_from_config(synthesized):
    jd = job_definitions(synthesized["genomics-core"].compute_json)["labbatch-genomics-core-bwa-mem"]
    container = jd["ContainerProperties"]
    assert {r["Type"]: r["Value"] for r in container["ResourceRequirements"]} == {"VCPU": "16", "MEMORY": "60000"}
    assert jd["Timeout"] == {"AttemptDurationSeconds": 720 * 60}
    tool = container["Command"][container["Command"].index("--") + 1:]
    assert tool[:2] == ["bwa", "mem"]
    assert container["Image"] == "quay.io/biocontainers/bwa:0.7.18--he4a0461_1"


def test_retry_strategy_retries_spot_reclaims_and_ends_with_catch_all_exit(synthesized):
    for jd in job_definitions(synthesized["genomics-core"].compute_json).values():
        rules = jd["RetryStrategy"]["EvaluateOnExit"]
        assert rules[0] == {"Action": "RETRY", "OnStatusReason": "Host EC2*"}
        assert rules[-1] == {"Action": "EXIT", "OnReason": "*"}
        assert len(rules) <= 5
    attempts = {n: jd["RetryStrategy"]["Attempts"] for n, jd in job_definitions(synthesized["genomics-core"].compute_json).items()}
    assert attempts["labbatch-genomics-core-bwa-mem"] == 4 and attempts["labbatch-genomics-core-star-align"] == 2


def test_demo_pipelines_use_the_image_built_from_containers(synthesized):
    for jd in job_definitions(synthesized["example"].compute_json).values():
        assert "container-assets" in json.dumps(jd["ContainerProperties"]["Image"])


@pytest.mark.parametrize("lab,days", [("example", 30), ("genomics-core", 90)])
def test_jobs_log_to_the_labs_own_log_group_with_its_retention(synthesized, lab, days):
    t = synthesized[lab].compute_json
    groups = resources(t, "AWS::Logs::LogGroup")
    [(group_id, group)] = [(k, g) for k, g in groups.items()
                           if g["Properties"].get("LogGroupName") == f"/labbatch/{lab}/jobs"]
    assert group["Properties"]["LogGroupName"] == f"/labbatch/{lab}/jobs"
    # Every log group of the stack expires (job logs and the VPC flow log).
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {days}
    for jd in job_definitions(t).values():
        options = jd["ContainerProperties"]["LogConfiguration"]
        assert options["LogDriver"] == "awslogs"
        assert options["Options"]["awslogs-group"] == {"Ref": group_id}
    assert "/aws/batch/job" not in json.dumps(t)


def test_everything_is_tagged_with_the_lab_and_its_cost_tags(synthesized):
    t = synthesized["genomics-core"].compute_json
    for kind in ("AWS::Batch::ComputeEnvironment", "AWS::Batch::JobQueue", "AWS::Batch::JobDefinition"):
        for res in resources(t, kind).values():
            tags = res["Properties"]["Tags"]
            assert tags["labbatch:lab"] == "genomics-core" and tags["cost-center"] == "gc-4711", kind
    for logical_id, res in resources(t, "AWS::IAM::Role").items():
        if logical_id.startswith("Custom"):
            continue  # CDK's own custom-resource provider role takes no tags
        tags = {tag["Key"]: tag["Value"] for tag in res["Properties"]["Tags"]}
        assert tags["labbatch:lab"] == "genomics-core", logical_id
    for lt in resources(t, "AWS::EC2::LaunchTemplate").values():  # one per pool
        for spec in lt["Properties"]["LaunchTemplateData"]["TagSpecifications"]:
            tags = {tag["Key"]: tag["Value"] for tag in spec["Tags"]}
            assert tags["cost-center"] == "gc-4711", spec["ResourceType"]
        assert {s["ResourceType"] for s in lt["Properties"]["LaunchTemplateData"]["TagSpecifications"]} == \
            {"instance", "volume"}
