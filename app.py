#!/usr/bin/env python3
"""The LabBatch CDK app: one set of stacks per lab file in labs/ (`-c lab=NAME` for one lab,
`-c labs_dir=DIR` for another folder of lab files)."""

import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from labbatch.lab.loader import LabConfigError, load_labs
from stacks.lab import build_lab

app = cdk.App()
try:
    labs_dir = Path(app.node.try_get_context("labs_dir") or Path(__file__).resolve().parent / "labs")
    labs = load_labs(labs_dir, only=app.node.try_get_context("lab"))
except LabConfigError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
for lab in labs:
    build_lab(app, lab)
# Any unacknowledged finding fails synth; acknowledged ones carry their reasons in the metadata.
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
app.synth()
