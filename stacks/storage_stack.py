"""The stateful half of a lab: its buckets and job ledger. Termination protection on, everything RETAIN."""

from __future__ import annotations

from constructs import Construct

from labbatch.config import Lab
from lab_constructs.job_ledger import JobLedger
from lab_constructs.storage import LabBuckets
from stacks.lab_stack import LabStack


class StorageStack(LabStack):
    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab) -> None:
        super().__init__(scope, construct_id, lab=lab, termination_protection=True,
                         description=f"LabBatch {lab.name}: buckets for inputs, references and results; the job ledger")
        self.buckets = LabBuckets(self, "Buckets", lab_name=lab.name, storage=lab.storage)
        self.ledger = JobLedger(self, "JobLedger", lab_name=lab.name)
