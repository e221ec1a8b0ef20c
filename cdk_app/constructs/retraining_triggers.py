"""What starts a retraining run besides `clinrisk pipeline start`: per task, a schedule and a drift alarm.

Every task in context `tasks` gets its own pair, and each starts the state machine with an input
naming that task (`{"trigger": ..., "task": <name>}`, `clinrisk.pipeline.contracts.ExecutionInput`):

- **Schedule:** an EventBridge rule on the task's `retrainSchedule` (context `retrainSchedule` when
  the task names none) starts the state machine with `{"trigger": "schedule", "task": <name>}`.
- **Drift:** the task's alarm watches `clinrisk` / `FeatureDrift` with dimensions Environment and
  Task (the largest population stability index over that task's features, published by the
  monitor, `clinrisk.monitoring.monitor.emf_records`) and alarms to the alerts topic. The task's
  rule starts the state machine with `{"trigger": "drift-alarm", "task": <name>}` when *that*
  alarm enters ALARM: its pattern names the alarm's ARN and requires `detail.state.value` = ALARM
  and `detail.previousState.value` other than ALARM. One task drifting retrains that task only.
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
- All targets start executions with one role allowed `states:StartExecution` on this machine only,
  retry for two hours, and park events they could not deliver in one encrypted dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
# The monitor publishes FeatureDrift under these (clinrisk.monitoring.monitor.DRIFT_ALARM_DIMENSIONS).
DRIFT_DIMENSIONS = ("Environment", "Task")
# PSI of 0.25 or more is the conventional "significant shift" (0.1-0.25: moderate, watch it).
DRIFT_THRESHOLD = 0.25
DRIFT_PERIOD = Duration.hours(1)
# Execution inputs name the trigger and the task; clinrisk.pipeline.contracts.ExecutionInput forbids other keys.
SCHEDULE_TRIGGER = "schedule"
DRIFT_TRIGGER = "drift-alarm"
# Retries cover a throttled or briefly unavailable StartExecution; an event older than this is moot.
MAX_EVENT_AGE = Duration.hours(2)
RETRY_ATTEMPTS = 8


@dataclass(frozen=True)
class TaskTriggers:
    """One task's schedule rule, drift alarm and the rule that retrains it when that alarm fires."""

    schedule_rule: events.Rule
    drift_metric: cloudwatch.Metric
    drift_alarm: cloudwatch.Alarm
    drift_rule: events.Rule


class RetrainingTriggers(Construct):
    by_task: dict[str, TaskTriggers]
    dead_letters: sqs.Queue
    role: iam.Role

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        state_machine: sfn.IStateMachine,
        schedules: Mapping[str, str],
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
        for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
            acknowledge(
                self.dead_letters,
                rule,
                "This queue is the rules' dead-letter queue: it keeps start events EventBridge could not"
                " deliver; a dead-letter queue behind it would only move the same events again.",
            )
        self._machine, self._alerts, self._env_name = state_machine, alerts, env_name
        self.by_task = {task: self._task(task, schedule) for task, schedule in schedules.items()}

    def _task(self, task: str, schedule: str) -> TaskTriggers:
        scope = Construct(self, task)
        schedule_rule = events.Rule(
            scope,
            "Schedule",
            description=f"clinrisk: scheduled retraining of {task}",
            schedule=events.Schedule.expression(schedule),
        )
        schedule_rule.add_target(self._start({"trigger": SCHEDULE_TRIGGER, "task": task}))
        metric = cloudwatch.Metric(
            namespace=DRIFT_NAMESPACE,
            metric_name=DRIFT_METRIC,
            dimensions_map=dict(zip(DRIFT_DIMENSIONS, (self._env_name, task), strict=True)),
            statistic=cloudwatch.Stats.MAXIMUM,
            period=DRIFT_PERIOD,
        )
        alarm = metric.create_alarm(
            scope,
            "DriftAlarm",
            alarm_name=drift_alarm_name(self._env_name, task),
            alarm_description=f"clinrisk: {task} feature drift (max PSI) over 0.25; entering ALARM starts one"
            f" retraining run of {task}",
            threshold=DRIFT_THRESHOLD,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self._alerts))
        alarm.add_ok_action(cloudwatch_actions.SnsAction(self._alerts))
        drift_rule = events.Rule(
            scope,
            "DriftAlarmEntered",
            description=f"clinrisk: retrain {task} when its drift alarm enters ALARM (once per episode)",
            event_pattern=drift_alarm_pattern(alarm.alarm_arn),
        )
        drift_rule.add_target(self._start({"trigger": DRIFT_TRIGGER, "task": task}))
        return TaskTriggers(schedule_rule=schedule_rule, drift_metric=metric, drift_alarm=alarm, drift_rule=drift_rule)

    def _start(self, execution_input: dict[str, Any]) -> targets.SfnStateMachine:
        return targets.SfnStateMachine(
            self._machine,
            input=events.RuleTargetInput.from_object(execution_input),
            role=self.role,
            dead_letter_queue=self.dead_letters,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
        )


def drift_alarm_name(env_name: str, task: str) -> str:
    """The name of `task`'s drift alarm; the alarm notices (cdk_app/constructs/alarm_notices.py) look it up by it."""
    return f"clinrisk-{env_name}-{task}-feature-drift"


def drift_alarm_pattern(alarm_arn: str) -> events.EventPattern:
    """The drift alarm's transition into ALARM, and nothing else (see the module docstring)."""
    return events.EventPattern(
        source=["aws.cloudwatch"],
        detail_type=["CloudWatch Alarm State Change"],
        resources=[alarm_arn],
        detail={"state": {"value": ["ALARM"]}, "previousState": {"value": [{"anything-but": ["ALARM"]}]}},
    )
