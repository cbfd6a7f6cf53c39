"""The stateful half of a lab: its buckets and job ledger (and, for `encryption: kms`, its key).
Termination protection on, everything RETAIN."""

from __future__ import annotations

from constructs import Construct

from labbatch.lab.config import Lab
from lab_constructs.audit import AuditTrail
from lab_constructs.job_ledger import JobLedger
from lab_constructs.lab_key import LabKey
from lab_constructs.storage import LabBuckets
from stacks.lab_stack import LabStack


class StorageStack(LabStack):
    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab) -> None:
        super().__init__(scope, construct_id, lab=lab, termination_protection=True,
                         description=f"LabBatch {lab.name}: buckets for inputs, references and results; the job ledger")
        self.key = (LabKey(self, "LabKey", lab_name=lab.name, audit=lab.audit, people=list(lab.api.principals))
                    if lab.encryption == "kms" else None)
        key = self.key.key if self.key else None
        self.buckets = LabBuckets(self, "Buckets", lab_name=lab.name, storage=lab.storage, key=key)
        self.ledger = JobLedger(self, "JobLedger", lab_name=lab.name, key=key)
        self.audit = AuditTrail(self, "AuditTrail", lab_name=lab.name, log_bucket=self.buckets.access_logs,
                                data_buckets=list(self.buckets.buckets.values()), table=self.ledger.table,
                                key=key) if lab.audit else None
