"""What every stack of a lab shares: its environment, its tags, and offline synth."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Environment, Stack, Tags, Token, Validations
from constructs import Construct

from labbatch_contract import names

from labbatch.lab.config import Lab

LAB_TAG = names.LAB_TAG


class LabStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab, description: str,
                 termination_protection: bool = False) -> None:
        env = Environment(account=lab.account, region=lab.region) if lab.account and lab.region else None
        super().__init__(scope, construct_id, env=env, description=description,
                         termination_protection=termination_protection)
        self._zones = list(lab.availability_zones or lab.network.availability_zones)
        if self._zones:
            Validations.of(self).acknowledge(Acknowledgment(
                id="CloudFormation-Validate::W3010",
                reason="The lab file names its availability zones so that synth needs no credentials "
                       "or lookups; the zones are the lab owner's choice, checked against its Region."))
        Tags.of(self).add(LAB_TAG, lab.name)
        for key, value in lab.tags.items():
            Tags.of(self).add(key, value)

    @property
    def availability_zones(self) -> list[str]:
        # With an explicit account and Region, CDK would look the zones up at synth, which needs
        # credentials; the lab file names them instead.
        if self._zones and not (Token.is_unresolved(self.account) or Token.is_unresolved(self.region)):
            return self._zones
        return super().availability_zones
