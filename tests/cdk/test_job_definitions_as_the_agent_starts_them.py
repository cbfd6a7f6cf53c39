"""Local mode starts the containers a deploy's job definitions make the ECS agent start: every
pipeline's synthesized `AWS::Batch::JobDefinition`, read back through the one translation
(labbatch_contract.batch_container), gives the very container local mode's registered definition
gives, but for the image (an asset or registry URI there, the lab's image name here)."""

from __future__ import annotations

import pytest

from labbatch_contract.batch_container import container_for, definition_from_template
from labbatch.lab.batch_layout import layout
from labbatch.lab.config import DEMO_IMAGE
from labbatch.lab.loader import load_labs
from labbatch.local.batch.registration import registration

from tests.cdk.conftest import resources
from tests.conftest import LABS_DIR

LABS = {lab.name: lab for lab in load_labs(LABS_DIR)}


@pytest.mark.parametrize("lab_name", sorted(LABS))
def test_each_pipelines_deployed_definition_starts_the_container_local_mode_starts(synthesized, lab_name):
    lab = LABS[lab_name]
    local = {d.name: d for d in registration(layout(lab), lab.name)["job_definitions"]}
    deployed = {r["Properties"]["JobDefinitionName"]: r["Properties"]
                for r in resources(synthesized[lab_name].compute_json, "AWS::Batch::JobDefinition").values()}
    assert sorted(deployed) == sorted(local)
    for name, properties in deployed.items():
        request = definition_from_template(properties)
        image = request["containerProperties"]["image"]
        if isinstance(image, dict):  # the demo image, built as a CDK asset into the bootstrap ECR repository
            assert local[name].image == DEMO_IMAGE and ".dkr.ecr." in image["Fn::Sub"], (name, image)
            request["containerProperties"]["image"] = DEMO_IMAGE
        assert container_for(request) == container_for(local[name].request()), name
        assert container_for(request).mounts, f"{name}: the deployed definition mounts nothing"
