"""The job ledger: one DynamoDB record per submission, kept through mistakes and stack deletion."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from labbatch_contract import names
from labbatch_contract.ledger import (BY_CREATED_INDEX, BY_CREATED_PARTITION, BY_CREATED_SORT, PARTITION_KEY,
                                    TTL_ATTRIBUTE)

from lab_constructs.compliance import acknowledge



class JobLedger(Construct):
    """Exposes `table`. The construct ID names a stateful resource: never change it."""

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self, "Table",
            table_name=names.ledger_table(lab_name),
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            # Pay per request: an idle lab pays nothing for its ledger.
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            deletion_protection=True,
            # Switching between the two is an in-place update of the table, never a replacement.
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED if key else dynamodb.TableEncryption.AWS_MANAGED,
            encryption_key=key,
            # Idempotency records expire; job records carry no TTL and stay.
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table.add_global_secondary_index(
            index_name=BY_CREATED_INDEX,
            partition_key=dynamodb.Attribute(name=BY_CREATED_PARTITION, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=BY_CREATED_SORT, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        acknowledge(self.table, "HIPAA.Security-DynamoDBInBackupPlan",
                    "Point-in-time recovery keeps 35 days of continuous backups of the ledger; an AWS Backup "
                    "plan would add a vault and a fixed schedule for the same protection.")
