"""One job definition per configured pipeline: the pipeline's own image, unmodified, started
through the LabBatch runner that every instance mounts into it (labbatch/lab/batch_layout.py)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from labbatch_contract import names
from labbatch.lab.batch_layout import JobDefinitionSpec
from labbatch.lab.config import DEMO_IMAGE

from lab_constructs.compliance import (acknowledge, acknowledge_inline_policy, acknowledge_log_group_encryption,
                                       acknowledge_wildcard_resources)
from lab_constructs.retention import retention

CONTAINERS_DIR = Path(__file__).resolve().parent.parent / "containers"
_ON = {"onStatusReason": "on_status_reason", "onReason": "on_reason", "onExitCode": "on_exit_code"}


class PipelineJobDefinitions(Construct):
    """Exposes `job_definitions` (by pipeline), `log_group` and `job_role`.

    Jobs log to the lab's own log group, created here with the lab's retention, never to Batch's
    default `/aws/batch/job`, which keeps logs forever. The job role reads the lab's inputs and
    references and writes its results, and can do nothing else.
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str,
                 job_definitions: tuple[JobDefinitionSpec, ...], bucket_names: dict[str, str],
                 log_retention_days: int, key: kms.IKey | None = None, tes_enabled: bool = False) -> None:
        super().__init__(scope, construct_id)

        self.log_group = logs.LogGroup(
            self, "JobLogGroup",
            log_group_name=names.job_log_group(lab_name),
            retention=retention(log_retention_days),
            encryption_key=key,
        )
        if key is None:
            acknowledge_log_group_encryption(self.log_group)

        inputs = s3.Bucket.from_bucket_name(self, "InputsBucket", bucket_names["inputs"])
        references = s3.Bucket.from_bucket_name(self, "ReferencesBucket", bucket_names["references"])
        results = s3.Bucket.from_bucket_name(self, "ResultsBucket", bucket_names["results"])

        self.job_role = iam.Role(
            self, "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"LabBatch {lab_name}: what a job may touch (read inputs and references, write results)",
            # Job definitions registered at run time name this role: the API's for TES tasks
            # (lambda/labbatch_api/tes_routes.py) and Nextflow's (aws.batch.jobRole, which `labbatch
            # engine-config nextflow` prints before anything is deployed): a name of its own.
            role_name=names.job_role(lab_name),
        )
        # Explicit actions rather than grant_read's s3:GetObject*/List*: a job reads objects and
        # needs ListBucket only so that a missing input answers 404 instead of 403.
        readable_objects = [inputs.arn_for_objects("*"), references.arn_for_objects("*")]
        self.job_role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=readable_objects))
        self.job_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[inputs.bucket_arn, references.bucket_arn]))
        # Each job writes under its own prefix, jobs/<job id>/; the runner enforces the id part.
        writable_objects = [results.arn_for_objects("jobs/*")]
        if tes_enabled:
            # TES tasks write their outputs under tes/ and read earlier tasks' outputs from there.
            # Workflow engines inside a task (Snakemake's storage plugin) treat tes/ as their work
            # prefix: they also list it, delete outputs they rerun, and check that the bucket
            # exists with HeadBucket, which needs ListBucket with no prefix (so no prefix condition).
            tes_objects = results.arn_for_objects(names.TES_OUTPUTS_PREFIX + "*")
            writable_objects.append(tes_objects)
            readable_objects.append(tes_objects)
            self.job_role.add_to_policy(iam.PolicyStatement(
                actions=["s3:GetObject", "s3:DeleteObject"], resources=[tes_objects]))
            self.job_role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[results.bucket_arn]))
        # Nextflow's tasks (its awsbatch executor) stage in and out of the work directory under
        # nextflow/, list it (`aws s3 ls` tells a file from a folder) and rerun over old outputs.
        nextflow_objects = results.arn_for_objects(names.NEXTFLOW_WORK_PREFIX + "*")
        writable_objects.append(nextflow_objects)
        readable_objects.append(nextflow_objects)
        self.job_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:DeleteObject"], resources=[nextflow_objects]))
        if not tes_enabled:
            # The runner proves its outputs landed whole with one listing of its own prefix
            # (labbatch_runner.staging._verify_uploaded), Nextflow's tasks list their work folder:
            # those prefixes and no other (without this, every stage-out is AccessDenied).
            self.job_role.add_to_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[results.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["jobs/*", names.NEXTFLOW_WORK_PREFIX + "*"]}}))
        self.job_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=writable_objects))
        if key is not None:
            # SSE-KMS objects: Decrypt to read (and to finish a multipart upload), GenerateDataKey to write.
            self.job_role.add_to_policy(iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]))
        acknowledge_wildcard_resources(
            self.job_role.node.find_child("DefaultPolicy"), readable_objects + writable_objects,
            "A job reads any object of its lab's inputs and references and writes only under jobs/ (and the "
            "engines' tes/ and nextflow/) of its lab's results; object keys are chosen at submission, so they "
            "cannot be listed in the policy.")

        self.execution_role = iam.Role(
            self, "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"LabBatch {lab_name}: ECS pulls job images and writes job logs",
            role_name=names.job_execution_role(lab_name) if tes_enabled else None,
        )

        demo_image = None
        if any(spec.image == DEMO_IMAGE for spec in job_definitions):
            # Built and pushed at deploy; synth only stages the directory, so it needs no Docker.
            demo_image = ecs.ContainerImage.from_docker_image_asset(ecr_assets.DockerImageAsset(
                self, "DemoImage", directory=str(CONTAINERS_DIR),
                exclude=["**/__pycache__", "**/*.egg-info", "**/.pytest_cache"]))

        self.job_definitions: dict[str, batch.EcsJobDefinition] = {}
        for spec in job_definitions:
            name = spec.pipeline
            image = demo_image if spec.image == DEMO_IMAGE else ecs.ContainerImage.from_registry(spec.image)
            container = batch.EcsEc2ContainerDefinition(
                self, f"{name}-container",
                image=image,
                cpu=spec.vcpus,
                memory=Size.mebibytes(spec.memory_mib),
                # The `GPU` resource requirement: the ECS agent hands the container that many GPUs.
                gpu=spec.gpus or None,
                command=list(spec.command),
                environment=dict(spec.environment),
                # Scratch data stays on the scratch volume; the runner tree is read-only, so no
                # job can change what the next one runs.
                volumes=[batch.EcsVolume.host(name=mount.name, host_path=mount.host_path,
                                              container_path=mount.container_path, readonly=mount.read_only)
                         for mount in spec.mounts],
                logging=ecs.LogDriver.aws_logs(stream_prefix=name, log_group=self.log_group),
                job_role=self.job_role,
                execution_role=self.execution_role,
            )
            self.job_definitions[name] = batch.EcsJobDefinition(
                self, f"{name}-job-definition",
                job_definition_name=spec.name,
                container=container,
                timeout=Duration.seconds(spec.timeout_seconds),
                retry_attempts=spec.attempts,
                retry_strategies=[
                    batch.RetryStrategy.of(batch.Action[rule["action"]], batch.Reason.custom(
                        **{_ON[k]: v for k, v in rule.items() if k != "action"}))
                    for rule in spec.retry_rules
                ],
                propagate_tags=True,
            )

        acknowledge_inline_policy(self.job_role.node.find_child("DefaultPolicy"))
        execution_policy = self.execution_role.node.find_child("DefaultPolicy")
        acknowledge_inline_policy(execution_policy)
        acknowledge(execution_policy, "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken has no resource-level permissions; image pulls and log writes "
                    "are scoped to the lab's repository and log group.")
