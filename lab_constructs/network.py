"""Where the lab's instances live: a VPC made to measure, or subnets the lab already has."""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from labbatch.config import Network


class LabNetwork(Construct):
    """Exposes `vpc`, `subnets` (for the compute environments) and `security_group`.

    The default, `public`, has no NAT gateway: instances take public IPs but accept no inbound
    traffic, and S3 is reached through a gateway endpoint, which is free. An idle lab then pays
    nothing for its network; `private-nat` costs a NAT gateway per zone around the clock.
    """

    def __init__(self, scope: Construct, construct_id: str, *, network: Network) -> None:
        super().__init__(scope, construct_id)

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

        self.security_group = ec2.SecurityGroup(
            self, "InstanceSecurityGroup",
            vpc=self.vpc,
            description="LabBatch instances: no inbound rules; outbound for S3, ECR, ECS and logs",
            allow_all_outbound=True,
        )
