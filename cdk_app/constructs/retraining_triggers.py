"""What starts a retraining run besides `clinrisk pipeline start`: a schedule and the drift alarm.

- **Schedule:** an EventBridge rule on context `retrainSchedule` (weekly by default) starts the
  state machine with `{"trigger": "schedule"}`.
- **Drift:** the alarm watches `clinrisk` / `FeatureDrift` (the largest population stability index
  over the model's features, per environment; the Lambda that publishes it comes later) and alarms
  to the alerts topic. A second rule starts the state machine with `{"trigger": "drift-alarm"}`
  when the alarm *enters* ALARM: its pattern requires `detail.state.value` = ALARM and
  `detail.previousState.value` other than ALARM.
- **No retrain storm:** CloudWatch emits a state-change event only when the state changes, and the
  pattern takes only the change into ALARM, so an alarm that stays in ALARM starts one run, not one
  per evaluation. Missing data *keeps* the alarm's state (`IGNORE`), rather than counting as "not
  breaching": the drift metric arrives in batches, and "not breaching" between them would flip the
  alarm to OK and back to ALARM at every batch, starting a run each time. The alarm returns to OK
  only on a datapoint below the threshold, e.g. once a retrained model's baseline matches the data.
- **Runs already going:** these starts do not check for a running execution (`clinrisk pipeline
  start` does, and skips). A second run may overlap a first: each has its own run id, channels,
  training job and model version, and promotion is a compare-and-set against the champion the run
  was evaluated against, serialised by the promote function's reserved concurrency of 1, so the
  later promotion ends `stale` (notified) instead of replacing a model it was never compared with.
  The schedule (weekly) and the transition-only drift rule make overlaps rare.
- Both targets start executions with a role allowed `states:StartExecution` on this machine only,
  retry for two hours, and park events they could not deliver in an encrypted dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.role_findings import INLINE_POLICY_REASON

DRIFT_NAMESPACE = "clinrisk"
DRIFT_METRIC = "FeatureDrift"
DRIFT_DIMENSION = "Environment"
# PSI of 0.25 or more is the conventional "significant shift" (0.1-0.25: moderate, watch it).
DRIFT_THRESHOLD = 0.25
DRIFT_PERIOD = Duration.hours(1)
SCHEDULE_INPUT: dict[str, Any] = {"trigger": "schedule"}
DRIFT_INPUT: dict[str, Any] = {
    "trigger": "drift-alarm"
}  # clinrisk.pipeline.contracts.ExecutionInput forbids other keys
# Retries cover a throttled or briefly unavailable StartExecution; an event older than this is moot.
MAX_EVENT_AGE = Duration.hours(2)
RETRY_ATTEMPTS = 8


class RetrainingTriggers(Construct):
    schedule_rule: events.Rule
    drift_metric: cloudwatch.Metric
    drift_alarm: cloudwatch.Alarm
    drift_rule: events.Rule
    dead_letters: sqs.Queue
    role: iam.Role

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        state_machine: sfn.IStateMachine,
        schedule: str,
        alerts: sns.ITopic,
        env_name: str,
    ) -> None:
        super().__init__(scope, id)
        self.role = iam.Role(self, "StartRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"))
        acknowledge(self.role, "HIPAA.Security-IAMNoInlinePolicy", INLINE_POLICY_REASON)
        self.dead_letters = sqs.Queue(
            self,
            "Undelivered",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.schedule_rule = events.Rule(
            self,
            "Schedule",
            description="clinrisk: scheduled retraining",
            schedule=events.Schedule.expression(schedule),
        )
        self.schedule_rule.add_target(self._start(state_machine, SCHEDULE_INPUT))
        self.drift_metric = cloudwatch.Metric(
            namespace=DRIFT_NAMESPACE,
            metric_name=DRIFT_METRIC,
            dimensions_map={DRIFT_DIMENSION: env_name},
            statistic=cloudwatch.Stats.MAXIMUM,
            period=DRIFT_PERIOD,
        )
        self.drift_alarm = self.drift_metric.create_alarm(
            self,
            "DriftAlarm",
            alarm_name=drift_alarm_name(env_name),
            alarm_description="clinrisk: feature drift (max PSI) over 0.25; entering ALARM starts one retraining run",
            threshold=DRIFT_THRESHOLD,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
        )
        self.drift_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alerts))
        self.drift_alarm.add_ok_action(cloudwatch_actions.SnsAction(alerts))
        self.drift_rule = events.Rule(
            self,
            "DriftAlarmEntered",
            description="clinrisk: retrain when the drift alarm enters ALARM (once per episode)",
            event_pattern=drift_alarm_pattern(self.drift_alarm.alarm_arn),
        )
        self.drift_rule.add_target(self._start(state_machine, DRIFT_INPUT))
        for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
            acknowledge(
                self.dead_letters,
                rule,
                "This queue is the rules' dead-letter queue: it keeps start events EventBridge could not"
                " deliver; a dead-letter queue behind it would only move the same events again.",
            )

    def _start(self, state_machine: sfn.IStateMachine, execution_input: dict[str, Any]) -> targets.SfnStateMachine:
        return targets.SfnStateMachine(
            state_machine,
            input=events.RuleTargetInput.from_object(execution_input),
            role=self.role,
            dead_letter_queue=self.dead_letters,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
        )


def drift_alarm_name(env_name: str) -> str:
    return f"clinrisk-{env_name}-feature-drift"


def drift_alarm_pattern(alarm_arn: str) -> events.EventPattern:
    """The drift alarm's transition into ALARM, and nothing else (see the module docstring)."""
    return events.EventPattern(
        source=["aws.cloudwatch"],
        detail_type=["CloudWatch Alarm State Change"],
        resources=[alarm_arn],
        detail={"state": {"value": ["ALARM"]}, "previousState": {"value": [{"anything-but": ["ALARM"]}]}},
    )
