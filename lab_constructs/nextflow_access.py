"""What a Nextflow head may do on one lab with Nextflow's own AWS Batch executor (nf-amazon).

The head (on a scientist's machine, or a head job) registers its own job definitions, submits,
describes and terminates jobs, and reads and writes its work directory (nextflow-io/nextflow
2aad02f, nf-amazon 3.10.2: AwsBatchTaskHandler, AwsBatchExecutor). `labbatch engine-config
nextflow` prints the config that fits these grants (labbatch/client/nextflow_config.py).

Scope, and what is shared:
- Queues: the lab's own (two per instance pool), by ARN.
- Jobs: submitted only tagged `labbatch:lab=<lab>` (engine-config sets process.resourceLabels, which
  Nextflow sends as SubmitJob tags with propagateTags), so terminate and cancel reach only jobs
  carrying this lab's tag.
- Job definitions: Nextflow names them `nf-<image>` and cannot be given a prefix
  (normalizeJobDefinitionName), nor a tag of ours (it tags them nextflow.io/* only). So every lab
  of one account registers under the same `nf-*` names: one lab's head can add revisions to a
  definition another lab's head also uses. A revision grants nothing by itself (the role it
  names must be passed, and PassRole is this lab's job role only), and Nextflow picks the revision
  whose `nf-token` parameter matches its own hash of the whole container (role included), so labs
  do not run each other's revisions.
- PassRole: the lab's job role only, to ECS tasks.
- S3: the work prefix (`nextflow/` in the lab's results bucket) read, write, delete; the bucket
  listed; inputs and references read.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from labbatch_contract import names

from lab_constructs.compliance import acknowledge, nag_text

# Batch has no resource-level permissions for these (Service Authorization Reference, AWS Batch).
DESCRIBE_ACTIONS = ["batch:DescribeJobs", "batch:DescribeJobDefinitions", "batch:DescribeJobQueues",
                    "batch:DescribeComputeEnvironments"]
PASSED_TO = "ecs-tasks.amazonaws.com"


def nextflow_policy_name(lab: str) -> str:
    return f"{names.PREFIX}-{lab}-nextflow"


class NextflowAccess(Construct):
    """Exposes `policy` (managed, named labbatch-<lab>-nextflow) and `role` (the same name, assumable
    by the lab's `api.principals`; None when the lab names none)."""

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, queues: dict[Any, batch.IJobQueue],
                 job_role: iam.IRole, bucket_names: dict[str, str],
                 key: kms.IKey | None = None, principals: list[str] | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        prefix = names.NEXTFLOW_JOB_DEFINITION_PREFIX

        def batch_arn(resource: str) -> str:
            return stack.format_arn(service="batch", resource=resource)

        job_definitions = batch_arn(f"job-definition/{prefix}*")
        jobs = batch_arn("job/*")
        results = f"arn:{stack.partition}:s3:::{bucket_names['results']}"
        work_objects = f"{results}/{names.NEXTFLOW_WORK_PREFIX}*"
        log_streams = (f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:"
                       f"{names.job_log_group(lab_name)}:log-stream:*")
        statements = [
            iam.PolicyStatement(sid="RegisterNextflowJobDefinitions",
                                actions=["batch:RegisterJobDefinition", "batch:TagResource"],
                                resources=[job_definitions]),
            iam.PolicyStatement(sid="SubmitTaggedToLabQueues", actions=["batch:SubmitJob", "batch:TagResource"],
                                resources=[*(q.job_queue_arn for q in queues.values()), job_definitions, jobs],
                                conditions={"StringEquals": {f"aws:RequestTag/{names.LAB_TAG}": lab_name}}),
            iam.PolicyStatement(sid="StopLabJobs", actions=["batch:TerminateJob", "batch:CancelJob"],
                                resources=[jobs],
                                conditions={"StringEquals": {f"aws:ResourceTag/{names.LAB_TAG}": lab_name}}),
            iam.PolicyStatement(sid="DescribeBatch", actions=DESCRIBE_ACTIONS, resources=["*"]),
            iam.PolicyStatement(sid="PassLabJobRole", actions=["iam:PassRole"], resources=[job_role.role_arn],
                                conditions={"StringEquals": {"iam:PassedToService": PASSED_TO}}),
            iam.PolicyStatement(sid="WorkDirectory",
                                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                                resources=[work_objects]),
            iam.PolicyStatement(sid="ListLabBuckets", actions=["s3:ListBucket"], resources=[
                f"arn:{stack.partition}:s3:::{bucket_names[kind]}" for kind in ("inputs", "references", "results")]),
            iam.PolicyStatement(sid="ReadInputs", actions=["s3:GetObject"], resources=[
                f"arn:{stack.partition}:s3:::{bucket_names[kind]}/*" for kind in ("inputs", "references")]),
            # aws.batch.logsGroup (engine-config sets the lab's job log group): Nextflow reads a
            # failed task's log from there.
            iam.PolicyStatement(sid="ReadTaskLogs", actions=["logs:GetLogEvents"], resources=[log_streams]),
        ]
        if key is not None:
            statements.append(iam.PolicyStatement(sid="LabKey", actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                                  resources=[key.key_arn]))
        self.policy = iam.ManagedPolicy(
            self, "Policy", managed_policy_name=nextflow_policy_name(lab_name), statements=statements,
            description=f"LabBatch {lab_name}: a Nextflow head on the lab's queues (awsbatch executor)")
        acknowledge(self.policy, "AwsSolutions-IAM5[Resource::*]",
                    "Batch's Describe actions have no resource-level permissions (Service Authorization Reference).")
        for resource, why in (
                (job_definitions, "Nextflow names its job definitions nf-<image> and cannot prefix them."),
                (jobs, "Job ids are Batch's; jobs are reached only with this lab's tag (condition)."),
                (work_objects, "The engine's work directory: keys are task hashes, chosen at run time."),
                (log_streams, "Batch names a job's log stream at run time, in the lab's own log group."),
                *((f"arn:{stack.partition}:s3:::{bucket_names[k]}/*", "A head checks and reads any input of "
                   "its lab; keys are the scientists'.") for k in ("inputs", "references"))):
            acknowledge(self.policy, f"AwsSolutions-IAM5[Resource::{nag_text(self.policy, resource)}]", why)
        self.role = None
        if principals:
            self.role = iam.Role(
                self, "Role", role_name=nextflow_policy_name(lab_name),
                assumed_by=iam.CompositePrincipal(*(iam.ArnPrincipal(p) for p in principals)),
                managed_policies=[self.policy],
                description=f"LabBatch {lab_name}: assume to run a Nextflow head on the lab")
