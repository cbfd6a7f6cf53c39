"""One lab's set of stacks."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from labbatch import names
from labbatch.config import Lab
from stacks.api_stack import ApiStack
from stacks.compute_stack import ComputeStack
from stacks.storage_stack import StorageStack


@dataclass
class LabStacks:
    storage: StorageStack
    compute: ComputeStack
    api: ApiStack


def build_lab(scope: Construct, lab: Lab) -> LabStacks:
    storage = StorageStack(scope, names.stack(lab.name, "Storage"), lab=lab)
    compute = ComputeStack(scope, names.stack(lab.name, "Compute"), lab=lab)
    compute.add_stack_dependency(storage)
    api = ApiStack(scope, names.stack(lab.name, "Api"), lab=lab)
    # The API submits to the compute stack's queues and writes the storage stack's ledger.
    api.add_stack_dependency(compute)
    return LabStacks(storage=storage, compute=compute, api=api)
