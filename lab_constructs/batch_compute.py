"""Spot and on-demand compute environments that scale from zero, and the queues in front of them."""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from labbatch.lab.batch_layout import layout
from labbatch.lab.config import DEFAULT_POOL, Lab, Pool
from labbatch_contract import boot_reasons, names

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


def _machine_image(pool: Pool) -> batch.EcsMachineImage:
    if pool.ami_id:
        image: ec2.IMachineImage = _FixedAmi(pool.ami_id)
    else:
        # Rendered as an SSM-typed CloudFormation parameter: resolved at deploy, never at synth.
        # GPU pools: /aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id.
        hardware = (ecs.AmiHardwareType.GPU if pool.gpu else
                    ecs.AmiHardwareType.ARM if pool.architecture == "arm64" else ecs.AmiHardwareType.STANDARD)
        image = ecs.EcsOptimizedImage.amazon_linux2023(hardware_type=hardware)
    # The NVIDIA image type tells Batch the instances have GPUs to hand to jobs.
    image_type = batch.EcsMachineImageType.ECS_AL2023_NVIDIA if pool.gpu else batch.EcsMachineImageType.ECS_AL2023
    return batch.EcsMachineImage(image=image, image_type=image_type)


def pool_construct_id(pool: str, name: str) -> str:
    """The construct ID of a pool's resource: the pool `default` keeps the IDs of a one-pool lab
    (so its resources update in place); another pool's are prefixed with its name in CamelCase."""
    if pool == DEFAULT_POOL:
        return name
    return "".join(part.capitalize() for part in pool.split("-")) + name


class BatchCompute(Construct):
    """Exposes `environments` and `queues`, each by (pool, kind): ("default", "spot"), ...

    The compute environments use the Batch service-linked role and an allocation strategy that
    allows in-place updates, and pin the launch template's version number: together these make
    a new scratch size or AMI reach running environments on the next deploy.
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab, network: LabNetwork,
                 launch_templates: dict[str, ec2.LaunchTemplate]) -> None:
        super().__init__(scope, construct_id)
        lab_name = lab.name

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
                    "needs new calls; it reaches no lab data (buckets, ledger and key admit the lab's own roles).")
        plan = layout(lab)
        self.environments: dict[tuple[str, str], batch.ManagedEc2EcsComputeEnvironment] = {}
        for env_spec in plan.environments:
            spot = env_spec.kind == "spot"
            pool = lab.pools[env_spec.pool]
            launch_template = launch_templates[env_spec.pool]
            env = batch.ManagedEc2EcsComputeEnvironment(
                self, pool_construct_id(env_spec.pool, "SpotComputeEnvironment" if spot else "OnDemandComputeEnvironment"),
                vpc=network.vpc,
                vpc_subnets=network.subnets,
                security_groups=[network.security_group],
                instance_role=self.instance_role,
                # A family name (`r6i`) is every size of it, as Batch reads it.
                instance_types=[ec2.InstanceType(t) for t in env_spec.instance_types if "." in t],
                instance_classes=[ec2.InstanceClass[t.upper()] for t in env_spec.instance_types if "." not in t],
                use_optimal_instance_classes=False,
                images=[_machine_image(pool)],
                launch_template=launch_template,
                minv_cpus=0,
                maxv_cpus=env_spec.max_vcpus,
                spot=spot,
                allocation_strategy=(batch.AllocationStrategy[env_spec.allocation_strategy] if spot
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
            # Tags Batch puts on every instance it launches here: `labbatch why`/`doctor` find the
            # instances of an environment none of whose instances joined its cluster by them, and
            # the diagnose policy lets its holders read the console only of instances with the
            # lab's tag (labbatch_contract/boot_reasons.py). Stack tags reach the environment,
            # not its instances. An infrastructure update (replace_compute_environment=False).
            cfn_env.add_property_override("ComputeResources.Tags", {
                names.LAB_TAG: lab_name,
                boot_reasons.COMPUTE_ENVIRONMENT_TAG: boot_reasons.compute_environment_tag(env_spec.pool, env_spec.kind)})
            self.environments[(env_spec.pool, env_spec.kind)] = env

        self.queues: dict[tuple[str, str], batch.JobQueue] = {}
        for queue in plan.queues:
            self.queues[(queue.pool, queue.queue)] = batch.JobQueue(
                self, pool_construct_id(queue.pool, "SpotJobQueue" if queue.queue == "spot" else "OnDemandJobQueue"),
                job_queue_name=queue.name,
                priority=queue.priority,
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.environments[(queue.pool, kind)],
                                                    order=i + 1)
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
