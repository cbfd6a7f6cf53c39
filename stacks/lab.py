"""One lab's set of stacks."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from labbatch_contract import names
from labbatch.lab.config import Lab
from stacks.api_stack import ApiStack
from stacks.compute_stack import ComputeStack
from stacks.operations_stack import OperationsStack
from stacks.storage_stack import StorageStack


@dataclass
class LabStacks:
    storage: StorageStack
    compute: ComputeStack
    api: ApiStack
    operations: OperationsStack


def build_lab(scope: Construct, lab: Lab) -> LabStacks:
    storage = StorageStack(scope, names.stack(lab.name, "Storage"), lab=lab)
    compute = ComputeStack(scope, names.stack(lab.name, "Compute"), lab=lab)
    compute.add_stack_dependency(storage)
    operations = OperationsStack(scope, names.stack(lab.name, "Operations"), lab=lab)
    if lab.encryption == "kms":
        # The alert topic is encrypted with the key the storage stack creates.
        operations.add_stack_dependency(storage)
    api = ApiStack(scope, names.stack(lab.name, "Api"), lab=lab)
    # The API submits to the compute stack's queues, writes the storage stack's ledger and
    # publishes failures to the operations stack's topic.
    api.add_stack_dependency(compute)
    api.add_stack_dependency(operations)
    return LabStacks(storage=storage, compute=compute, api=api, operations=operations)
