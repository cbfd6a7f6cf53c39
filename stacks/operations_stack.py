"""A lab's operations: who hears about failures and spend. Stateless."""

from __future__ import annotations

from constructs import Construct

from labbatch.lab.config import Lab
from lab_constructs.lab_key import lab_key
from lab_constructs.operations import LabAlerts, LabBudget, LabDashboard
from stacks.lab_stack import LabStack


class OperationsStack(LabStack):
    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab) -> None:
        super().__init__(scope, construct_id, lab=lab,
                         description=f"LabBatch {lab.name}: alert topic, monthly budget and (opt-in) dashboard")
        self.alerts = LabAlerts(self, "Alerts", lab_name=lab.name, alerts=lab.alerts,
                                key=lab_key(self, lab.name, lab.encryption))
        self.budget = LabBudget(self, "Budget", lab_name=lab.name, budget=lab.budget, alerts=lab.alerts,
                                topic=self.alerts.topic)
        self.dashboard = LabDashboard(self, "Dashboard", lab_name=lab.name) if lab.dashboard else None
