"""The lab's job API: API Gateway (IAM auth) in front of the handler, and the job-state updater."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from labbatch_contract import names, outcome
from labbatch.lab.config import Api, Tes
from labbatch_contract.ledger import BY_CREATED_INDEX
from labbatch_contract import tes as tes_rules

# The TES subtrees (labbatch_contract.tes.TES_ROOTS): /ga4gh/tes/v1/..., and /v1/... for clients
# that append /v1/tasks to the lab's own URL. Each a greedy resource behind the token authorizer.
TES_ROOTS = tuple(root.strip("/") for root in tes_rules.TES_ROOTS)

from lab_constructs.compliance import (acknowledge, acknowledge_inline_policy, acknowledge_log_group_encryption,
                                       acknowledge_wildcard_resources)
from lab_constructs.retention import retention

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"
# Both functions carry the one contract package (ledger, settings, names, runner environment).
CONTRACT_DIR = Path(__file__).resolve().parent.parent / "labbatch_contract"
RUNTIME = lambda_.Runtime.PYTHON_3_14
# Powertools publishes its layer ARNs in public SSM parameters; the version matches
# requirements.txt and is resolved at deploy, so synth makes no lookup.
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/x86_64/python3.14/{POWERTOOLS_VERSION}"
LAB_TAG = names.LAB_TAG
SAMPLE_LISTS_PREFIX = names.SAMPLES_PREFIX
_ROOT_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")


@jsii.implements(ILocalBundling)
class _CopyWithContract:
    """The function's package plus labbatch_contract beside it, copied at synth: no Docker."""

    def __init__(self, package: Path) -> None:
        self._package = package

    def try_bundle(self, output_dir: str, *_args, **_kwargs) -> bool:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(self._package, Path(output_dir) / self._package.name, dirs_exist_ok=True, ignore=ignore)
        shutil.copytree(CONTRACT_DIR, Path(output_dir) / CONTRACT_DIR.name, dirs_exist_ok=True, ignore=ignore)
        return True


def _code_with_contract(package: Path) -> lambda_.Code:
    # The hash of what is bundled, so a change to the contract alone still redeploys the function.
    return lambda_.Code.from_asset(
        str(package), asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(image=DockerImage.from_registry("unused-local-bundling"),
                                 local=_CopyWithContract(package)))


def _function(scope: Construct, construct_id: str, *, name: str, log_group_name: str, package: str, handler: str,
              description: str,
              environment: dict[str, str], layer: lambda_.ILayerVersion, log_retention_days: int,
              timeout: Duration, memory_mib: int, dead_letter_queue: sqs.IQueue | None = None,
              key: kms.IKey | None = None) -> lambda_.Function:
    log_group = logs.LogGroup(scope, f"{construct_id}Logs", log_group_name=log_group_name,
                              retention=retention(log_retention_days), encryption_key=key)
    if key is None:
        acknowledge_log_group_encryption(log_group)
    function = lambda_.Function(
        scope, construct_id,
        function_name=name,
        runtime=RUNTIME,
        architecture=lambda_.Architecture.X86_64,
        code=_code_with_contract(LAMBDA_DIR / package),
        handler=handler,
        description=description,
        layers=[layer],
        memory_size=memory_mib,
        timeout=timeout,
        environment=environment,
        log_group=log_group,
        tracing=lambda_.Tracing.ACTIVE,
        dead_letter_queue=dead_letter_queue,
        # The settings name the lab's buckets, table and queues; with the lab's key they are
        # encrypted with it rather than Lambda's AWS managed key.
        environment_encryption=key,
    )
    acknowledge(function, "HIPAA.Security-LambdaInsideVPC",
                "The function calls only AWS APIs (Batch, DynamoDB, S3); inside a VPC it would need a NAT "
                "gateway or interface endpoints, a fixed monthly cost for no added isolation.")
    acknowledge(function, "HIPAA.Security-LambdaConcurrency",
                "Reserved concurrency would take from the account pool that every lab shares and fails to "
                "deploy on accounts at the minimum quota; API Gateway throttling bounds the handler.")
    role = function.role
    acknowledge(role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                      "AWSLambdaBasicExecutionRole]",
                "The AWS managed basic execution policy only lets the function write its own logs.")
    return function


class JobApi(Construct):
    """Exposes `rest_api`, `handler`, `status_updater`, `url`.

    Callers sign with SigV4; the resource policy admits only the lab's configured principals
    (or, with none configured, identities of the lab's own account that IAM allows).
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, api: Api,
                 settings_json: str, table_name: str, bucket_names: dict[str, str],
                 queue_names: list[str], job_definition_names: list[str], log_retention_days: int,
                 alert_topic_arn: str | None = None, key: kms.IKey | None = None,
                 tes: Tes | None = None) -> None:
        """`tes`: the lab's TES settings when its endpoint is on (it lists allowed images), else None."""
        super().__init__(scope, construct_id)
        tes_enabled = tes is not None
        stack = Stack.of(self)

        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "PowertoolsLayer",
            ssm.StringParameter.value_for_string_parameter(self, POWERTOOLS_LAYER_PARAMETER))
        common_env = {"LABBATCH_SETTINGS": settings_json, "POWERTOOLS_LOG_LEVEL": "INFO"}

        self.handler = _function(
            self, "Handler", name=names.function(lab_name, "api"), log_group_name=names.log_group(lab_name, "api"),
            package="labbatch_api", handler="labbatch_api.handler.lambda_handler",
            description=f"LabBatch {lab_name}: job API", layer=layer,
            environment={**common_env, "POWERTOOLS_SERVICE_NAME": "labbatch-api"},
            log_retention_days=log_retention_days, memory_mib=1024, key=key,
            timeout=Duration.seconds(28))  # under API Gateway's own 29 s integration limit
        acknowledge(self.handler, "HIPAA.Security-LambdaDLQ",
                    "API Gateway invokes the handler synchronously: a failure is answered to the caller and "
                    "recorded in the ledger; there is no event to park in a queue.")
        # Events the updater still cannot record after EventBridge's retries wait here for replay.
        self.failed_status_events = sqs.Queue(
            self, "FailedStatusEvents", enforce_ssl=True,
            encryption=sqs.QueueEncryption.KMS if key else sqs.QueueEncryption.SQS_MANAGED, encryption_master_key=key,
            retention_period=Duration.days(14))
        acknowledge(self.failed_status_events, "AwsSolutions-SQS3",
                    "This queue is itself the dead-letter queue of the status updater.")
        self.status_updater = _function(
            self, "StatusUpdater", name=names.function(lab_name, "status"),
            log_group_name=names.log_group(lab_name, "status"), package="labbatch_status",
            handler="labbatch_status.handler.lambda_handler",
            description=f"LabBatch {lab_name}: records Batch job state changes in the ledger", layer=layer,
            environment={**common_env, "POWERTOOLS_SERVICE_NAME": "labbatch-status",
                         **({"LABBATCH_ALERT_TOPIC_ARN": alert_topic_arn} if alert_topic_arn else {})},
            # 30 s: a failure may read the runner's manifest and resubmit (lambda/labbatch_status/recovery.py).
            log_retention_days=log_retention_days, timeout=Duration.seconds(30), memory_mib=512,
            dead_letter_queue=self.failed_status_events, key=key)
        if key is not None:
            # The ledger, the DLQ, the alert topic and SSE-KMS objects: the handler writes sample
            # lists, the updater reads manifests, both read and write the ledger.
            for function in (self.handler, self.status_updater):
                function.add_to_role_policy(iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    resources=[key.key_arn]))

        table = dynamodb.Table.from_table_name(self, "Ledger", table_name)
        index = f"{table.table_arn}/index/{BY_CREATED_INDEX}"
        # Exactly what each function does: the handler writes, reads, lists and (idempotency)
        # deletes its own in-progress items, and reads an array job's failed children a page at a
        # time (BatchGetItem); the updater updates records, reads a failed job's record and,
        # recovering it, writes the new job's.
        self.handler.add_to_role_policy(iam.PolicyStatement(
            actions=["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem",
                     "dynamodb:DeleteItem"],
            resources=[table.table_arn]))
        self.handler.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:Query"], resources=[index]))
        self.status_updater.add_to_role_policy(iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], resources=[table.table_arn]))
        self._grant_data_access(bucket_names)
        queue_arns = [stack.format_arn(service="batch", resource="job-queue", resource_name=q) for q in queue_names]
        self._grant_batch(lab_name, queue_arns, job_definition_names)
        if tes_enabled:
            self._grant_tes(lab_name, queue_arns, bucket_names)
        if alert_topic_arn:
            # Jobs that fail for good are announced on the lab's alert topic, and on no other.
            self.status_updater.add_to_role_policy(iam.PolicyStatement(
                actions=["sns:Publish"], resources=[alert_topic_arn]))

        # Only this lab's queues feed its ledger.
        events.Rule(
            self, "JobStateChanges",
            description=f"LabBatch {lab_name}: Batch job state changes on the lab's queues",
            event_pattern=events.EventPattern(
                source=["aws.batch"], detail_type=["Batch Job State Change"],
                detail={"jobQueue": queue_arns}),
            targets=[targets.LambdaFunction(self.status_updater, retry_attempts=8,
                                            max_event_age=Duration.hours(6))],
        )

        access_logs = logs.LogGroup(self, "AccessLogs", log_group_name=names.log_group(lab_name, "api-access"),
                                    retention=retention(log_retention_days), encryption_key=key)
        if key is None:
            acknowledge_log_group_encryption(access_logs)
        self.rest_api = apigw.LambdaRestApi(
            self, "RestApi",
            rest_api_name=names.rest_api(lab_name),
            description=f"LabBatch {lab_name}: submit and follow jobs",
            handler=self.handler,
            proxy=True,
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            policy=self._resource_policy(api, tes_enabled),
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                tracing_enabled=True,
                throttling_rate_limit=api.throttle_rate_per_second,
                throttling_burst_limit=api.throttle_burst,
                # Workflow engines poll each task (Snakemake up to 10 a second per workflow) and
                # abort the whole workflow on the first 429: the TES subtree gets its own, higher limit.
                method_options={f"/{root}/{{proxy+}}/*": apigw.MethodDeploymentOptions(
                    throttling_rate_limit=tes.throttle_rate_per_second, throttling_burst_limit=tes.throttle_burst)
                    for root in TES_ROOTS} if tes is not None else None,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True),
            ),
        )
        self.url = self.rest_api.url
        self.tes_authorizer: lambda_.Function | None = None
        if tes_enabled:
            self._tes_subtree(lab_name, table, layer, log_retention_days, key)
        self._acknowledge_api_findings()
        for function in (self.handler, self.status_updater):
            policy = function.role.node.find_child("DefaultPolicy")
            acknowledge_inline_policy(policy)
            acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                        "X-Ray's PutTraceSegments/PutTelemetryRecords and Batch's ListJobs and Describe* calls support "
                        "no resource-level permissions; every other statement names this lab's resources.")
        acknowledge_wildcard_resources(
            self.status_updater.role.node.find_child("DefaultPolicy"), self._updater_wildcard_resources,
            "The runner writes a job's manifest under jobs/<job id>/ in the results bucket and the API an array "
            "job's sample list under work/samples/ in the inputs bucket; job ids and job "
            "definition revisions are only known at run time, and tagging is limited to this lab's tag.")
        acknowledge_wildcard_resources(
            self.handler.role.node.find_child("DefaultPolicy"), self._wildcard_resources,
            "Inputs are any object of the lab's inputs and references buckets (HEAD before submit); sample lists "
            "go under work/samples/; job ids and job definition revisions are only known at run time, and "
            "cancel/terminate are further limited to jobs tagged with this lab.")

    def _tes_subtree(self, lab_name: str, table: dynamodb.ITable, layer: lambda_.ILayerVersion,
                     log_retention_days: int, key: kms.IKey | None) -> None:
        """`/ga4gh/{proxy+}` (more specific than the root's `{proxy+}`, so API Gateway routes every
        TES path here) behind a Lambda REQUEST authorizer that takes the lab's bearer tokens
        (lambda/labbatch_authorizer): TES clients cannot sign SigV4. Every other method stays AWS_IAM."""
        self.tes_authorizer = _function(
            self, "TesAuthorizer", name=names.function(lab_name, "tes-auth"),
            log_group_name=names.log_group(lab_name, "tes-auth"), package="labbatch_authorizer",
            handler="labbatch_authorizer.handler.lambda_handler",
            description=f"LabBatch {lab_name}: checks TES bearer tokens against the ledger", layer=layer,
            environment={"LABBATCH_TABLE": table.table_name}, log_retention_days=log_retention_days,
            memory_mib=256, timeout=Duration.seconds(10), key=key)
        acknowledge(self.tes_authorizer, "HIPAA.Security-LambdaDLQ",
                    "API Gateway invokes the authorizer synchronously for each request; a failure is answered "
                    "to the caller as a refusal, and there is no event to park in a queue.")
        # Read-only, and only the ledger: one GetItem per request.
        self.tes_authorizer.add_to_role_policy(iam.PolicyStatement(
            actions=["dynamodb:GetItem"], resources=[table.table_arn]))
        if key is not None:
            self.tes_authorizer.add_to_role_policy(iam.PolicyStatement(
                actions=["kms:Decrypt"], resources=[key.key_arn]))
        policy = self.tes_authorizer.role.node.find_child("DefaultPolicy")
        acknowledge_inline_policy(policy)
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray's PutTraceSegments/PutTelemetryRecords support no resource-level permissions; the "
                    "only data the authorizer reads is one item of this lab's ledger.")
        authorizer = apigw.RequestAuthorizer(
            self, "TesTokens", handler=self.tes_authorizer,
            identity_sources=[apigw.IdentitySource.header("Authorization")],
            # No caching: a revoked token is refused from the next request on.
            results_cache_ttl=Duration.seconds(0))
        for root in TES_ROOTS:
            subtree = self.rest_api.root.add_resource(root).add_resource("{proxy+}")
            subtree.add_method("ANY", apigw.LambdaIntegration(self.handler), authorizer=authorizer,
                               authorization_type=apigw.AuthorizationType.CUSTOM)

    def _acknowledge_api_findings(self) -> None:
        acknowledge(self.rest_api, "AwsSolutions-APIG2",
                    "The handler validates every request against its pydantic models and answers a 4xx that "
                    "names the field; API Gateway's validator on a proxy route would only repeat it, less precisely.")
        stage = self.rest_api.deployment_stage
        acknowledge(stage, "AwsSolutions-APIG3",
                    "No WAF web ACL: every request is SigV4-signed by an admitted IAM principal and the stage "
                    "is throttled; a web ACL adds a fixed monthly cost per lab.")
        for rule in ("AwsSolutions-APIG6", "HIPAA.Security-APIGWExecutionLoggingEnabled"):
            acknowledge(stage, rule,
                        "Access logs record every request; execution logging needs the account-wide API Gateway "
                        "CloudWatch role, a setting shared by every API in the Region that a lab must not own.")
        acknowledge(stage, "HIPAA.Security-APIGWCacheEnabledAndEncrypted",
                    "Job status must never be served stale, and a cache cluster bills by the hour.")
        acknowledge(stage, "HIPAA.Security-APIGWSSLEnabled",
                    "The backend is a Lambda proxy integration, not an HTTP endpoint, so there is no backend "
                    "connection for a client certificate to protect.")
        for method in self.rest_api.methods:
            acknowledge(method, "AwsSolutions-COG4",
                        "Callers are IAM principals authorised with SigV4 and fenced by the resource policy; "
                        "LabBatch has no Cognito user pool by design.")

    def _resource_policy(self, api: Api, tes_enabled: bool = False) -> iam.PolicyDocument:
        invoke = {"actions": ["execute-api:Invoke"], "resources": ["execute-api:/*"]}
        # TES clients carry a bearer token, not an IAM identity: the TES subtree is open to the
        # authorizer, which refuses any request without a live token of this lab.
        tes_paths = [f"execute-api:/*/*/{root}/*" for root in TES_ROOTS]
        tes_allow = ([iam.PolicyStatement(principals=[iam.AnyPrincipal()], actions=["execute-api:Invoke"],
                                          resources=tes_paths)] if tes_enabled else [])
        if not api.principals:
            return iam.PolicyDocument(statements=[iam.PolicyStatement(
                principals=[iam.AccountRootPrincipal()], **invoke), *tes_allow])
        roots = [m.group(1) for p in api.principals if (m := _ROOT_ARN.match(p))]
        arns = [p for p in api.principals if not _ROOT_ARN.match(p)]
        allow = iam.PolicyStatement(principals=[iam.ArnPrincipal(p) for p in api.principals], **invoke)
        # With IAM auth, a same-account identity whose own policy allows execute-api would get in
        # without being listed; the explicit deny keeps the API to the listed principals.
        conditions = {}
        if arns:
            conditions["StringNotEquals"] = {"aws:PrincipalArn": arns}
        if roots:
            conditions.setdefault("StringNotEquals", {})["aws:PrincipalAccount"] = roots
        deny_where = {"not_resources": tes_paths} if tes_enabled else {"resources": ["execute-api:/*"]}
        deny = iam.PolicyStatement(effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                                   conditions=conditions, actions=["execute-api:Invoke"], **deny_where)
        return iam.PolicyDocument(statements=[allow, deny, *tes_allow])

    def _grant_data_access(self, bucket_names: dict[str, str]) -> None:
        self._wildcard_resources: list[str] = []
        # The updater reads the runner's manifest of a failed job to classify its failure.
        results = s3.Bucket.from_bucket_name(self, "ResultsBucket", bucket_names["results"])
        manifests = results.arn_for_objects(outcome.manifest_key("jobs/*/"))
        self.status_updater.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[manifests]))
        self._updater_wildcard_resources: list[str] = [manifests]
        for kind in ("inputs", "references"):
            bucket = s3.Bucket.from_bucket_name(self, f"{kind.capitalize()}Bucket", bucket_names[kind])
            # HEAD of each input (existence and size for the scratch estimate); ListBucket turns a
            # missing key into 404 instead of 403, so the caller learns which input is wrong.
            self.handler.add_to_role_policy(iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[bucket.arn_for_objects("*")]))
            self._wildcard_resources.append(bucket.arn_for_objects("*"))
            self.handler.add_to_role_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
            if kind == "inputs":
                # Array jobs' sample lists, too big for SubmitJob's 30 KiB.
                self.handler.add_to_role_policy(iam.PolicyStatement(
                    actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{SAMPLE_LISTS_PREFIX}*")]))
                self._wildcard_resources.append(bucket.arn_for_objects(f"{SAMPLE_LISTS_PREFIX}*"))
                # The updater names a failed child's sample from its job's sample list.
                self.status_updater.add_to_role_policy(iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{SAMPLE_LISTS_PREFIX}*")]))
                self._updater_wildcard_resources.append(bucket.arn_for_objects(f"{SAMPLE_LISTS_PREFIX}*"))

    def _grant_tes(self, lab_name: str, queue_arns: list[str], bucket_names: dict[str, str]) -> None:
        """The GA4GH TES routes (lambda/labbatch_api/tes_routes.py): register job definitions for task images
        under the lab's own prefix only (the `_` in it cannot occur in a lab name, so no other lab's
        definitions match), pass the lab's two job roles to them, submit to them; the task
        document, outputs and manifests in the lab's buckets."""
        stack = Stack.of(self)
        definitions = stack.format_arn(service="batch", resource="job-definition",
                                       resource_name=names.tes_job_definition_prefix(lab_name) + "*")
        self.handler.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:RegisterJobDefinition"], resources=[definitions]))
        self.handler.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:TagResource"], resources=[definitions],
            conditions={"StringEquals": {f"aws:RequestTag/{LAB_TAG}": lab_name}}))
        for function in (self.handler, self.status_updater):
            function.add_to_role_policy(iam.PolicyStatement(
                actions=["batch:SubmitJob"], resources=[*queue_arns, definitions]))
        roles = [stack.format_arn(service="iam", region="", resource="role", resource_name=role)
                 for role in (names.job_role(lab_name), names.job_execution_role(lab_name))]
        self.handler.add_to_role_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=roles,
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}))
        inputs = s3.Bucket.from_bucket_name(self, "TesInputsBucket", bucket_names["inputs"])
        results = s3.Bucket.from_bucket_name(self, "TesResultsBucket", bucket_names["results"])
        task_documents = inputs.arn_for_objects("work/tes/*")
        readable = [results.arn_for_objects(names.TES_OUTPUTS_PREFIX + "*"),
                    results.arn_for_objects(outcome.manifest_key("jobs/*/"))]
        self.handler.add_to_role_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[task_documents]))
        self.handler.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=readable))
        self.handler.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[results.bucket_arn]))
        self._wildcard_resources += [definitions, task_documents, *readable]
        self._updater_wildcard_resources.append(definitions)

    def _grant_batch(self, lab_name: str, queue_arns: list[str], job_definition_names: list[str]) -> None:
        stack = Stack.of(self)
        # Each of the lab's job definitions by name, any revision: never a name prefix, which
        # would also cover a lab whose name extends this one's (lab `a` and lab `a-b`).
        revisions = [stack.format_arn(service="batch", resource="job-definition", resource_name=f"{name}:*")
                     for name in job_definition_names]
        job_definitions = [stack.format_arn(service="batch", resource="job-definition", resource_name=name)
                           for name in job_definition_names] + revisions
        jobs = stack.format_arn(service="batch", resource="job", resource_name="*")
        self._wildcard_resources += [*revisions, jobs]
        # The updater resubmits failed jobs that can recover (lambda/labbatch_status/recovery.py), as the
        # handler submits them: same queues, job definitions and tag.
        self._updater_wildcard_resources += [*revisions, jobs]
        for function in (self.handler, self.status_updater):
            function.add_to_role_policy(iam.PolicyStatement(
                actions=["batch:SubmitJob"], resources=[*queue_arns, *job_definitions]))
            # Jobs carry the lab's tag from submission; only this lab's jobs can be tagged,
            # cancelled or terminated by this handler.
            function.add_to_role_policy(iam.PolicyStatement(
                actions=["batch:TagResource"], resources=[jobs],
                conditions={"StringEquals": {f"aws:RequestTag/{LAB_TAG}": lab_name}}))
        self.handler.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:CancelJob", "batch:TerminateJob"], resources=[jobs],
            conditions={"StringEquals": {f"aws:ResourceTag/{LAB_TAG}": lab_name}}))
        # Batch's Describe* and ListJobs support no resource-level permissions in IAM. The queue,
        # compute environment and job definition reads explain waiting jobs and answer GET /lab.
        self.handler.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobQueues",
                     "batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions"], resources=["*"]))
