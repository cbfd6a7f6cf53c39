"""A lab file's `local:` block is local mode's alone: the deployed stacks are the same with it or without."""

from __future__ import annotations

import json

import yaml

from labbatch.lab.loader import parse_lab

from tests.cdk.conftest import _synth, resources
from tests.conftest import LABS_DIR


def test_synth_is_unchanged_by_the_local_block(synthesized, cdk_context):
    data = yaml.safe_load((LABS_DIR / "genomics-core.yaml").read_text())
    assert data.pop("local")["images"], "genomics-core ships a local: block"
    without = _synth(cdk_context, [parse_lab(data, "genomics-core.yaml")])["genomics-core"]
    shipped = synthesized["genomics-core"]

    # The demo's image is an asset (a CloudFormation expression); the others are plain references.
    images = {json.dumps(props["Properties"]["ContainerProperties"]["Image"])
              for props in resources(shipped.compute_json, "AWS::Batch::JobDefinition").values()}
    # The pipelines' own images, never the local stand-ins, and the same resources with the same requests.
    assert '"quay.io/biocontainers/bwa:0.7.18--he4a0461_1"' in images and not any("local" in i for i in images)
    assert shipped.templates() == without.templates()
