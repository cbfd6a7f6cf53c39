"""Where the lab's instances live: a VPC made to measure, or subnets the lab already has."""

from __future__ import annotations

from aws_cdk import Annotations, CfnResource, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from labbatch_contract import names
from labbatch.lab.config import Network

from lab_constructs.compliance import acknowledge, acknowledge_inline_policy, acknowledge_log_group_encryption
from lab_constructs.retention import retention


class LabNetwork(Construct):
    """Exposes `vpc`, `subnets` (for the compute environments) and `security_group`.

    The default, `public`, has no NAT gateway: instances take public IPs but accept no inbound
    traffic, and S3 is reached through a gateway endpoint, which is free. An idle lab then pays
    nothing for its network; `private-nat` costs a NAT gateway per zone around the clock.
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, network: Network,
                 log_retention_days: int, key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self._lab_name, self._key = lab_name, key

        if network.mode == "existing":
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self, "Vpc", vpc_id=network.vpc_id, availability_zones=network.availability_zones)
            subnets = [
                ec2.Subnet.from_subnet_attributes(self, f"Subnet{i}", subnet_id=sid, availability_zone=az)
                for i, (sid, az) in enumerate(zip(network.subnet_ids, network.availability_zones))
            ]
            for subnet in subnets:
                # Batch needs only the subnet ids; LabBatch never touches an existing route table.
                Annotations.of(subnet).acknowledge_warning(
                    "@aws-cdk/aws-ec2:noSubnetRouteTableId", "route tables of an existing VPC are not used")
            self.subnets = ec2.SubnetSelection(subnets=subnets)
        else:
            public = network.mode == "public"
            subnet_configuration = [
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20)]
            if not public:
                subnet_configuration.append(ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20))
            self.vpc = ec2.Vpc(
                self, "Vpc",
                ip_addresses=ec2.IpAddresses.cidr(network.vpc_cidr),
                max_azs=network.max_azs,
                nat_gateways=0 if public else network.max_azs,
                subnet_configuration=subnet_configuration,
                gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            )
            self.subnets = ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PUBLIC if public else ec2.SubnetType.PRIVATE_WITH_EGRESS)
            self._acknowledge_public_subnets(public)
            self._bound_default_security_group_logs(log_retention_days)
            # Rejected connections only: what a reviewer needs to see probes, at no cost while idle.
            flow_logs = logs.LogGroup(self, "FlowLogs", log_group_name=names.log_group(lab_name, "vpc-flow-logs"),
                                      retention=retention(log_retention_days), encryption_key=key)
            if key is None:
                acknowledge_log_group_encryption(flow_logs)
            flow_log = self.vpc.add_flow_log(
                "RejectedTraffic", traffic_type=ec2.FlowLogTrafficType.REJECT,
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
            acknowledge_inline_policy(flow_log.node.find_child("IAMRole").node.find_child("DefaultPolicy"))

        self.security_group = ec2.SecurityGroup(
            self, "InstanceSecurityGroup",
            vpc=self.vpc,
            description="LabBatch instances: no inbound rules; outbound for S3, ECR, ECS and logs",
            allow_all_outbound=True,
        )

    def _bound_default_security_group_logs(self, log_retention_days: int) -> None:
        """CDK closes the VPC's default security group with a custom resource whose Lambda would
        log to an auto-created group that never expires; point it at one that does."""
        acknowledge(self.vpc, "HIPAA.Security-VPCDefaultSecurityGroupClosed",
                    "CDK's restrictDefaultSecurityGroup custom resource removes the default group's rules "
                    "at deploy time, which a template check cannot see.")
        provider = Stack.of(self).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        if provider is None:
            return
        handler: CfnResource = provider.node.find_child("Handler")
        # With the lab's key the group needs a name under /labbatch/<lab>/, the only log groups the
        # key policy lets CloudWatch Logs encrypt; without it, it keeps the name CloudFormation gave it.
        log_group = logs.LogGroup(
            self, "DefaultSecurityGroupCleanerLogs", retention=retention(log_retention_days),
            log_group_name=names.log_group(self._lab_name, "default-sg-cleaner") if self._key else None,
            encryption_key=self._key)
        if self._key is None:
            acknowledge_log_group_encryption(log_group)
        # Escape hatch: the provider is CDK-internal and exposes no logging option.
        handler.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
        handler.node.add_dependency(log_group)

    def _acknowledge_public_subnets(self, instances_inside: bool) -> None:
        reason = ("Public subnets without a NAT gateway are the default network: instances take public IPs "
                  "to reach ECR and ECS, accept no inbound traffic (no security group ingress), and an idle "
                  "lab pays nothing for its network." if instances_inside else
                  "These public subnets hold only the NAT gateways; instances run in the private subnets.")
        for subnet in self.vpc.public_subnets:
            acknowledge(subnet, "HIPAA.Security-VPCSubnetAutoAssignPublicIpDisabled", reason)
            acknowledge(subnet, "HIPAA.Security-VPCNoUnrestrictedRouteToIGW", reason)

