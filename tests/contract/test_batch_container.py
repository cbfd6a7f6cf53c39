"""The one translation, job definition (+ SubmitJob) -> the container the ECS agent starts, that
local mode and the instance rehearsal's agent share (labbatch_contract.batch_container)."""

from __future__ import annotations

import pytest

from labbatch_contract.batch_container import (JobContext, JobDefinitionError, batch_environment, camel_case,
                                               container_for, definition_from_template)

SCRATCH = {"volumes": [{"name": "scratch", "host": {"sourcePath": "/scratch"}}],
           "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": False}]}


def definition(**properties) -> dict:
    base = {"image": "quay.io/biocontainers/bwa:0.7.18", "command": ["bwa", "mem", "Ref::reference", "Ref::reads"],
            "environment": [{"name": "THREADS", "value": "4"}],
            "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "8192"}]}
    return {"jobDefinitionName": "bwa", "type": "container", "parameters": {"reads": "default.fq"},
            "containerProperties": {**base, **properties}}


def test_parameters_of_the_job_win_over_the_definitions_and_unknown_references_stay_as_batch_leaves_them():
    container = container_for(definition(), parameters={"reference": "ref.fa"})
    assert container.command == ("bwa", "mem", "ref.fa", "default.fq")
    container = container_for(definition(command=["sh", "-c", "echo Ref::missing Ref::reads"]),
                              parameters={"reads": "mine.fq"})
    assert container.command == ("sh", "-c", "echo Ref::missing mine.fq")


def test_overrides_replace_the_command_merge_the_environment_and_replace_resources():
    container = container_for(definition(), overrides={
        "command": ["bwa", "index", "Ref::reads"],
        "environment": [{"name": "THREADS", "value": "8"}, {"name": "EXTRA", "value": "1"}],
        "resourceRequirements": [{"type": "MEMORY", "value": "16384"}]})
    assert container.command == ("bwa", "index", "default.fq")
    assert container.environment == {"THREADS": "8", "EXTRA": "1"}
    assert (container.vcpus, container.memory_mib, container.gpus) == (4.0, 16384, 0)


def test_batchs_deprecated_vcpus_and_memory_fields_still_count():
    properties = definition()["containerProperties"]
    del properties["resourceRequirements"]
    container = container_for({"containerProperties": {**properties, "vcpus": 2, "memory": 1024}})
    assert (container.vcpus, container.memory_mib) == (2.0, 1024)


@pytest.mark.parametrize("change, message", [
    ({"privileged": True}, "containerProperties.privileged: LabBatch never runs privileged containers"),
    ({"image": ""}, "containerProperties.image is required"),
    ({"command": []}, "command must be a non-empty list of strings"),
    ({"resourceRequirements": [{"type": "VCPU", "value": "1"}]}, "must ask for VCPU and MEMORY"),
    ({"resourceRequirements": [{"type": "MEMORY", "value": "two"}, {"type": "VCPU", "value": "1"}]},
     "containerProperties.resourceRequirements[0].value is 'two' (allowed: a whole number)"),
    ({"resourceRequirements": [{"type": "DISK", "value": "1"}]},
     "containerProperties.resourceRequirements[0].type is 'DISK' (allowed: VCPU, MEMORY, GPU)"),
    ({"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}]},
     "containerProperties.environment[0].name 'AWS_BATCH_JOB_ID': names starting with AWS_BATCH are reserved"),
    ({"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]},
     "containerProperties.mountPoints[0].sourceVolume 'data' names no volume of the definition (volumes: none)"),
    ({**SCRATCH, "mountPoints": [{"sourceVolume": "scratch", "containerPath": "data"}]},
     "containerProperties.mountPoints[0].containerPath 'data' must be an absolute path"),
    ({"volumes": [{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]}, "EFS volumes are not run"),
    ({"ulimits": [{"name": "nofile", "softLimit": 2048, "hardLimit": 1024}]},
     "containerProperties.ulimits[0]: softLimit 2048 is above hardLimit 1024"),
    ({"linuxParameters": {"devices": [{"hostPath": "/dev/fuse", "permissions": ["ALL"]}]}},
     "containerProperties.linuxParameters.devices[0].permissions ['ALL'] (allowed: READ, WRITE, MKNOD)"),
])
def test_what_batch_or_labbatch_would_refuse_is_refused_naming_the_field(change, message):
    with pytest.raises(JobDefinitionError) as refused:
        container_for(definition(**change))
    assert message in str(refused.value)


def test_an_override_asking_for_a_reserved_variable_is_refused():
    with pytest.raises(JobDefinitionError, match=r"containerOverrides.environment\[0\].name 'AWS_BATCH_CE_NAME'"):
        container_for(definition(), overrides={"environment": [{"name": "AWS_BATCH_CE_NAME", "value": "x"}]})


def test_the_create_options_are_what_ecs_gives_the_container():
    container = container_for(definition(
        **SCRATCH, user="1000:1000", readonlyRootFilesystem=True,
        ulimits=[{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
        linuxParameters={"initProcessEnabled": True, "sharedMemorySize": 256, "maxSwap": 1024, "swappiness": 10,
                         "tmpfs": [{"containerPath": "/run/x", "size": 64, "mountOptions": ["noexec"]}],
                         "devices": [{"hostPath": "/dev/fuse", "permissions": ["READ", "WRITE"]}]}))
    options = container.create_options(host_paths={"/scratch": "/tmp/attempt-1"})
    assert options == [
        "--network", "host", "--cpu-shares", "4096", "--memory", "8192m", "--memory-swap", "9216m",
        "--memory-swappiness", "10", "--volume", "/tmp/attempt-1:/scratch",
        "--ulimit", "nofile=1024:4096", "--user", "1000:1000", "--read-only", "--init", "--shm-size", "256m",
        "--tmpfs", "/run/x:size=64m,noexec", "--device", "/dev/fuse:/dev/fuse:rw", "--env", "THREADS=4"]


def test_without_max_swap_the_container_gets_no_swap_as_on_the_ecs_optimized_ami():
    options = container_for(definition()).create_options()
    assert options[options.index("--memory") + 1] == options[options.index("--memory-swap") + 1] == "8192m"
    assert "--privileged" not in options


def test_batch_adds_its_variables_and_the_array_index_only_to_array_children():
    single = batch_environment(JobContext("j-1", 2, "ce-spot", "q-spot"))
    assert single == {"AWS_BATCH_JOB_ID": "j-1", "AWS_BATCH_JOB_ATTEMPT": "2", "AWS_BATCH_CE_NAME": "ce-spot",
                      "AWS_BATCH_JQ_NAME": "q-spot"}
    child = batch_environment(JobContext("j-1:7", 1, "ce-spot", "q-spot", array_index=7))
    assert child["AWS_BATCH_JOB_ARRAY_INDEX"] == "7" and child["AWS_BATCH_JOB_ID"] == "j-1:7"


def test_cloudformations_spelling_reads_as_the_apis_and_keeps_data_keys_as_written():
    template = {"ContainerProperties": {
        "Image": "img", "Command": ["run"], "ResourceRequirements": [{"Type": "VCPU", "Value": "1"},
                                                                      {"Type": "MEMORY", "Value": "512"}],
        "LogConfiguration": {"LogDriver": "awslogs", "Options": {"awslogs-stream-prefix": "p"}},
        "Volumes": [{"Name": "scratch", "Host": {"SourcePath": "/scratch"}}],
        "MountPoints": [{"SourceVolume": "scratch", "ContainerPath": "/scratch", "ReadOnly": False}]},
        "Parameters": {"InputKey": "x"}, "Tags": {"Project": "p"}}
    request = definition_from_template(template)
    assert request["parameters"] == {"InputKey": "x"} and request["tags"] == {"Project": "p"}
    assert request["containerProperties"]["logConfiguration"]["options"] == {"awslogs-stream-prefix": "p"}
    container = container_for(request)
    assert container.mounts[0].source == "/scratch" and container.memory_mib == 512
    assert camel_case([{"A": 1}]) == [{"a": 1}]


def test_a_gpu_requirement_hands_the_container_that_many_gpus():
    container = container_for(definition(), overrides={"resourceRequirements": [{"type": "GPU", "value": "2"}]})
    options = container.create_options()
    assert container.gpus == 2 and options[options.index("--gpus") + 1] == "2"
    assert "--gpus" not in container_for(definition()).create_options()
