"""The stateless half of a lab: network, scratch launch template, Batch compute and pipelines."""

from __future__ import annotations

from constructs import Construct

from labbatch_contract import names
from labbatch.lab.batch_layout import layout
from labbatch.lab.config import Lab
from lab_constructs.batch_compute import BatchCompute, pool_construct_id
from lab_constructs.boot_diagnosis import BootDiagnosisPolicy
from lab_constructs.lab_key import lab_key
from lab_constructs.network import LabNetwork
from lab_constructs.nextflow_access import NextflowAccess
from lab_constructs.pipelines import PipelineJobDefinitions
from lab_constructs.runner_image import RunnerImage
from lab_constructs.scratch_launch_template import ScratchLaunchTemplate
from lab_constructs.storage import DATA_BUCKETS
from stacks.lab_stack import LabStack


class ComputeStack(LabStack):
    def __init__(self, scope: Construct, construct_id: str, *, lab: Lab) -> None:
        super().__init__(scope, construct_id, lab=lab,
                         description=f"LabBatch {lab.name}: network, Batch compute, queues and pipelines")
        key = lab_key(self, lab.name, lab.encryption)
        network = LabNetwork(self, "Network", lab_name=lab.name, network=lab.network,
                             log_retention_days=lab.log_retention_days, key=key)
        runner = RunnerImage(self, "RunnerImage", architecture=lab.compute.architecture)
        # One launch template per pool (its scratch volume, its image's root volume); the pool
        # `default` keeps the construct ID a one-pool lab always had, so it updates in place.
        launch_templates = {
            name: ScratchLaunchTemplate(self, pool_construct_id(name, "ScratchLaunchTemplate"), scratch=pool.scratch,
                                        custom_ami=pool.ami_id is not None, gpu=pool.gpu, kms_key=key,
                                        boot_steps=[runner.boot_step]).launch_template
            for name, pool in lab.pools.items()}
        self.compute = BatchCompute(self, "BatchCompute", lab=lab, network=network,
                                    launch_templates=launch_templates)
        # Buckets are found by their deterministic names rather than cross-stack exports, so the
        # stateful stack never gets locked by an export this stack consumes.
        bucket_names = {kind: names.bucket(lab.name, kind, self.account, self.region) for kind in DATA_BUCKETS}
        self.pipelines = PipelineJobDefinitions(
            self, "Pipelines", lab_name=lab.name, job_definitions=layout(lab).job_definitions,
            bucket_names=bucket_names, log_retention_days=lab.log_retention_days, key=key,
            tes_enabled=bool(lab.tes.allowed_images))
        self.nextflow = NextflowAccess(self, "NextflowAccess", lab_name=lab.name, queues=self.compute.queues,
                                       job_role=self.pipelines.job_role, bucket_names=bucket_names, key=key,
                                       principals=list(lab.api.principals))
        self.boot_diagnosis = BootDiagnosisPolicy(self, "BootDiagnosis", lab_name=lab.name)
