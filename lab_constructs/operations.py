"""What reaches people: the lab's alert topic and its monthly budget."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from labbatch_contract import names
from labbatch.lab.config import Alerts, Budget

from lab_constructs.compliance import acknowledge

LAB_TAG = names.LAB_TAG


class LabAlerts(Construct):
    """Exposes `topic`: failed jobs and budget alerts, delivered to the lab's addresses."""

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, alerts: Alerts,
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # With the lab's key, whose policy lets AWS Budgets publish (the AWS managed key would not).
        self.topic = sns.Topic(self, "Topic", topic_name=names.alert_topic(lab_name),
                               display_name=f"LabBatch {lab_name}", enforce_ssl=True, master_key=key)
        for email in alerts.emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        # AWS Budgets publishes the budget's alerts here, for this account only.
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}}))
        if key is None:
            for rule in ("AwsSolutions-SNS2", "HIPAA.Security-SNSEncryptedKMS"):
                acknowledge(self.topic, rule,
                            "Messages carry job ids, status reasons and log locations, not data; AWS Budgets cannot "
                            "publish to a topic encrypted with the AWS managed key, and a customer key costs $1/month.")


class LabBudget(Construct):
    """A monthly cost budget over everything tagged with the lab, alerting the lab's topic.

    The filter works once `labbatch:lab` is activated as a cost allocation tag in the payer
    account's billing console (a one-time step per account; see docs/operations.md, "Cost").
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str, budget: Budget,
                 alerts: Alerts, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        subscribers = [budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic.topic_arn)]
        notifications = [
            budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type="ACTUAL", comparison_operator="GREATER_THAN", threshold=percent,
                    threshold_type="PERCENTAGE"),
                subscribers=subscribers)
            for percent in sorted(set(budget.alert_at_percent))
        ]
        notifications.append(budgets.CfnBudget.NotificationWithSubscribersProperty(
            notification=budgets.CfnBudget.NotificationProperty(
                notification_type="FORECASTED", comparison_operator="GREATER_THAN", threshold=100,
                threshold_type="PERCENTAGE"),
            subscribers=subscribers))
        self.budget = budgets.CfnBudget(
            self, "Resource",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=names.budget(lab_name),
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=budget.monthly_usd, unit="USD"),
                cost_filters={"TagKeyValue": [f"user:{LAB_TAG}${lab_name}"]},
            ),
            notifications_with_subscribers=notifications,
        )


class LabDashboard(Construct):
    """Opt-in ($3/month): API traffic, errors and latency, the functions' health, job outcomes.

    Batch publishes no queue metrics of its own; job outcomes come from the status updater's
    structured logs (one line per recorded state change), queried where they already are.
    """

    def __init__(self, scope: Construct, construct_id: str, *, lab_name: str) -> None:
        super().__init__(scope, construct_id)
        api_dims = {"ApiName": names.rest_api(lab_name), "Stage": "v1"}

        def api_metric(metric: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name=metric, dimensions_map=api_dims,
                                     statistic=statistic, period=Duration.minutes(5))

        def function_metric(part: str, metric: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/Lambda", metric_name=metric, statistic="Sum",
                                     dimensions_map={"FunctionName": names.function(lab_name, part)},
                                     period=Duration.minutes(5), label=f"{part} {metric.lower()}")

        status_logs = names.log_group(lab_name, "status")
        self.dashboard = cloudwatch.Dashboard(
            self, "Resource", dashboard_name=f"{names.PREFIX}-{lab_name}",
            widgets=[
                [cloudwatch.GraphWidget(title="API requests and errors", width=12, left=[
                    api_metric("Count"), api_metric("4XXError"), api_metric("5XXError")]),
                 cloudwatch.GraphWidget(title="API latency (ms)", width=12, left=[
                     api_metric("Latency", "p50"), api_metric("Latency", "p99")])],
                [cloudwatch.GraphWidget(title="Handler and updater errors and throttles", width=12, left=[
                    function_metric(part, metric) for part in ("api", "status") for metric in ("Errors", "Throttles")]),
                 cloudwatch.LogQueryWidget(
                     title="Job outcomes per hour", width=12, log_group_names=[status_logs],
                     view=cloudwatch.LogQueryVisualizationType.BAR,
                     query_lines=["filter message = 'Ledger updated' and isempty(child_index)",
                                  "filter status in ['SUCCEEDED', 'FAILED']",
                                  "stats count() by status, bin(1h)"])],
                [cloudwatch.LogQueryWidget(
                    title="Latest state of each job (RUNNABLE and RUNNING show what waits and what runs)",
                    width=24, log_group_names=[status_logs],
                    query_lines=["filter message = 'Ledger updated' and isempty(child_index)",
                                 "stats latest(status) as status, max(@timestamp) as last_change by job_id",
                                 "sort last_change desc", "limit 50"])],
            ],
        )
