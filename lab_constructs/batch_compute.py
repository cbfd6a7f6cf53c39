"""Spot and on-demand compute environments that scale from zero, and the queues in front of them."""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from labbatch.batch_layout import layout
from labbatch.config import Compute, Lab

from lab_constructs.compliance import acknowledge
from lab_constructs.network import LabNetwork


@jsii.implements(ec2.IMachineImage)
class _FixedAmi:
    """A lab's own AMI id, as given: no lookup, no Region map."""

    def __init__(self, ami_id: str) -> None:
        self._ami_id = ami_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(image_id=self._ami_id, os_type=ec2.OperatingSystemType.LINUX,
                                      user_data=ec2.UserData.for_linux())


def _machine_image(compute: Compute) -> batch.EcsMachineImage:
    if compute.ami_id:
        image: ec2.IMachineImage = _FixedAmi(compute.ami_id)
    else:
        # Rendered as an SSM-typed CloudFormation parameter: resolved at deploy, never at synth.
        hardware = ecs.AmiHardwareType.ARM if compute.architecture == "arm64" else ecs.AmiHardwareType.STANDARD
        image = ecs.EcsOptimizedImage.amazon_linux2023(hardware_type=hardware)
    return batch.EcsMachineImage(image=image, image_type=batch.EcsMachineImageType.ECS_AL2023)


class BatchCompute(Construct):
    """Exposes `environments` (by kind) and `queues` ({"spot": ..., "on-demand": ...}).

    The compute environments use the Batch service-linked role and an allocation strategy that
    allows in-place updates, and pin the launch template's version number: together these make
    a new scratch size or AMI reach running environments on the next deploy.
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab, network: LabNetwork,
                 launch_template: ec2.LaunchTemplate) -> None:
        super().__init__(scope, construct_id)
        lab_name, compute = lab.name, lab.compute

        self.instance_role = iam.Role(
            self, "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"LabBatch {lab_name}: ECS container instances (agent, image pulls, logs)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonEC2ContainerServiceforEC2Role")],
        )
        acknowledge(self.instance_role,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]",
                    "AWS maintains this policy for the ECS agent on Batch instances and extends it when the agent "
                    "needs new calls; job containers cannot use it (IMDS hop limit 1), they get the job role.")
        image = _machine_image(compute)

        plan = layout(lab)
        self.environments: dict[str, batch.ManagedEc2EcsComputeEnvironment] = {}
        for env_spec in plan.environments:
            spot = env_spec.kind == "spot"
            env = batch.ManagedEc2EcsComputeEnvironment(
                self, "SpotComputeEnvironment" if spot else "OnDemandComputeEnvironment",
                vpc=network.vpc,
                vpc_subnets=network.subnets,
                security_groups=[network.security_group],
                instance_role=self.instance_role,
                instance_types=[ec2.InstanceType(t) for t in env_spec.instance_types],
                use_optimal_instance_classes=False,
                images=[image],
                launch_template=launch_template,
                minv_cpus=0,
                maxv_cpus=env_spec.max_vcpus,
                spot=spot,
                allocation_strategy=(batch.AllocationStrategy[compute.spot_allocation_strategy] if spot
                                     else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE),
                replace_compute_environment=False,
                update_to_latest_image_version=True,
                terminate_on_update=False,
            )
            # The L2 names the launch template by id alone, which Batch reads as $Default and never
            # re-reads; a pinned version number makes every template change an update it applies.
            cfn_env: batch.CfnComputeEnvironment = env.node.default_child
            cfn_env.add_property_override("ComputeResources.LaunchTemplate.Version",
                                          launch_template.latest_version_number)
            self.environments[env_spec.kind] = env

        self.queues: dict[str, batch.JobQueue] = {}
        for queue in plan.queues:
            self.queues[queue.queue] = batch.JobQueue(
                self, "SpotJobQueue" if queue.queue == "spot" else "OnDemandJobQueue",
                job_queue_name=queue.name,
                priority=queue.priority,
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.environments[kind], order=i + 1)
                    for i, kind in enumerate(queue.environments)
                ],
                job_state_time_limit_actions=[
                    batch.JobStateTimeLimitAction(
                        reason=batch.JobStateTimeLimitActionsReason[reason.split(":", 1)[1]],
                        max_time=Duration.seconds(seconds),
                        action=batch.JobStateTimeLimitActionsAction.CANCEL,
                        state=batch.JobStateTimeLimitActionsState.RUNNABLE)
                    for reason, seconds in queue.cancel_after_seconds.items()
                ],
            )
