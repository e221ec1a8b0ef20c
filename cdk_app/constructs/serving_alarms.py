"""The alarms that guard serving: errors of the predict alias and 5xx answers of the API stage.

They page through the alerts topic and are also CodeDeploy's rollback signal: while a canary
runs, either alarm going off rolls the alias back to the previous version. Both watch one-minute
sums, so a bad version is caught within the canary's five minutes.

The 5xx metric is named by the API's and stage's names as plain strings, not through the Stage
construct: the deployment group needs the alarm, the alarm would need the stage, the stage its
deployment, the deployment the methods, and the methods the alias the deployment group updates,
which is a dependency cycle.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_app.constructs.predict_service import PredictService

PERIOD = Duration.minutes(1)
# Unhandled errors of the function (the handler turns expected failures into 4xx/503 answers,
# so a Lambda error is a bug or a crash): one is enough.
ERRORS_THRESHOLD = 1
# 5xx from the stage: handled internal errors (500), integration failures (502) and timeouts (504).
SERVER_ERRORS_THRESHOLD = 5


class ServingAlarms(Construct):
    """`alarms` (all of them, with the alerts topic as alarm and OK action) for CodeDeploy and Monitoring."""

    function_errors: cloudwatch.Alarm
    server_errors: cloudwatch.Alarm

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        service: PredictService,
        api_name: str,
        stage_name: str,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        self.function_errors = cloudwatch.Alarm(
            self,
            "FunctionErrors",
            alarm_name=f"{name}-predict-errors",
            alarm_description="The predict function's live alias raised errors; a running canary rolls back.",
            metric=service.alias.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=ERRORS_THRESHOLD,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.server_errors = cloudwatch.Alarm(
            self,
            "ServerErrors",
            alarm_name=f"{name}-api-5xx",
            alarm_description="The prediction API answered with 5xx errors; a running canary rolls back.",
            metric=cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name="5XXError",
                dimensions_map={"ApiName": api_name, "Stage": stage_name},
                period=PERIOD,
                statistic=cloudwatch.Stats.SUM,
            ),
            threshold=SERVER_ERRORS_THRESHOLD,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(topic))
            alarm.add_ok_action(actions.SnsAction(topic))

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return [self.function_errors, self.server_errors]
