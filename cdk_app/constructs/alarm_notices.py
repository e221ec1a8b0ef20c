"""Alarm notices: an EventBridge rule on the model alarms' state changes → the notice function
(monitoring image) → one SNS message to the alerts topic whose subject names the task, the metric
and the model version (clinrisk.monitoring.notices: CloudWatch's own SNS action has a fixed subject
and cannot name a dimension's value)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_app.constructs.image_functions import FunctionSizing, ImageFunctions, RuleDrivenFunction
from cdk_app.constructs.python_function import acknowledge_function_findings
from cdk_app.environment import settings_environment
from cdk_app.monitoring_image import ALARM_NOTICE_HANDLER
from cdk_app.permissions import allow_publish
from clinrisk.monitoring.notices import NoticeSettings, WatchedMetric

# Alarm changes come one at a time; EventBridge retries a throttled one.
SIZING = FunctionSizing(memory_size=256, timeout=Duration.seconds(30), reserved_concurrency=2)


class AlarmNotices(RuleDrivenFunction):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: ImageFunctions,
        alarms: Sequence[tuple[str, cloudwatch.IAlarm, WatchedMetric]],
        topic: sns.ITopic,
        topic_key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        watched = {name: metric.model_dump() for name, _, metric in alarms}
        self.function = functions.function(
            self,
            handler=ALARM_NOTICE_HANDLER,
            description="clinrisk alarm notices: a model alarm's state change, to the alerts topic with its version",
            environment=settings_environment(
                NoticeSettings, topic_arn=topic.topic_arn, alarms=json.dumps(watched, sort_keys=True)
            ),
            sizing=SIZING,
        )
        allow_publish(self.function.function, topic, key=topic_key)
        self.function.role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"]))
        self._run_on(
            events.Rule(
                self,
                "StateChanged",
                description="clinrisk: a model alarm changed state",
                event_pattern=events.EventPattern(
                    source=["aws.cloudwatch"],
                    detail_type=["CloudWatch Alarm State Change"],
                    resources=[alarm.alarm_arn for _, alarm, _ in alarms],
                ),
            ),
            retry_attempts=4,
        )
        acknowledge_function_findings(
            {
                self.function: "CloudWatch's GetMetricData has no resource-level permissions, so the notice function"
                " asks which model version breached with Resource '*'. X-Ray's PutTraceSegments and"
                " PutTelemetryRecords have none either, so tracing needs Resource '*'."
            }
        )
