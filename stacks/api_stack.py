"""A lab's job API: API Gateway, the handler and the ledger updater. Stateless."""

from __future__ import annotations

from aws_cdk import CfnOutput
from constructs import Construct

from labbatch_contract import names
from labbatch.lab.api_settings import lab_settings
from labbatch.lab.config import Lab
from lab_constructs.job_api import JobApi
from lab_constructs.lab_key import lab_key
from stacks.lab_stack import LabStack

ENDPOINT_OUTPUT = names.API_ENDPOINT_OUTPUT


class ApiStack(LabStack):
    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab) -> None:
        super().__init__(scope, construct_id, lab=lab,
                         description=f"LabBatch {lab.name}: job submission API")
        settings = lab_settings(lab, self.account, self.region)
        self.api = JobApi(
            self, "JobApi",
            lab_name=lab.name,
            api=lab.api,
            # Account and Region tokens inside the names resolve within the JSON string.
            settings_json=settings.to_environment(),
            table_name=settings.table,
            bucket_names=settings.buckets.model_dump(),
            queue_names=[name for pool in settings.pool_map().values() for name in pool.queues.values()],
            job_definition_names=[p.job_definition for p in settings.pipelines.values()],
            log_retention_days=lab.log_retention_days,
            alert_topic_arn=(self.format_arn(service="sns", resource=names.alert_topic(lab.name))
                             if lab.alerts.failed_jobs else None),
            key=lab_key(self, lab.name, lab.encryption),
            tes=lab.tes if lab.tes.allowed_images else None,
        )
        # `labbatch` finds a deployed lab's endpoint through this output.
        CfnOutput(self, ENDPOINT_OUTPUT, value=self.api.url, description="Job API endpoint (SigV4, execute-api)")
