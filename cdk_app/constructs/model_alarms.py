"""The model's alarms, per task: one per monitor metric worth waking someone for, each on the worst
value over every model version (a Metrics Insights query, so a version deployed later is watched
without a new alarm). Missing data (a window below the monitor's minimum size publishes nothing) is
not breaching. They notify through `AlarmNotices`, whose subject names the version.

| alarm | metric (worst over versions) | alarm when |
|---|---|---|
| score drift | ScoreDrift (score PSI), max | > psi_threshold (0.25) |
| high-risk rate | HighRiskRate, max | > high_risk_rate_alarm (0.20, the seed system's; a task file may set its own) |
| data quality | RefusedShare (422s), max | > refused_share_alarm (0.05) |
| realized AUC | RealizedAUC, min | < the gate's aucFloor |
| calibration, over | ObservedToExpected, max | > the band's top (1.25) |
| calibration, under | ObservedToExpected, min | < the band's bottom (0.8) |
| fairness gap | SubgroupAUCGapAboveLimit (1 if any attribute's gap is over the gate's limit for it), max | > 0.5 |

Feature drift is the Pipeline stack's alarm (its entry into ALARM starts a retraining); it is
notified the same way (`AlarmNotices`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from cdk_app.compliance import acknowledge
from clinrisk.monitoring.notices import WatchedMetric
from clinrisk.settings import GateRules, MonitoringRules
from clinrisk.taskspec import catalogue
from clinrisk.taskspec.rules import task_gate, task_monitoring

PERIOD = Duration.hours(1)  # the monitor's schedule publishes once an hour
Compare = cloudwatch.ComparisonOperator


@dataclass(frozen=True)
class ModelSignal:
    id: str
    metric: str
    worst: Literal["MAX", "MIN"]
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    description: str


def model_signals(rules: MonitoringRules, gate: GateRules) -> list[ModelSignal]:
    low, high = rules.calibration_band
    above, below = Compare.GREATER_THAN_THRESHOLD, Compare.LESS_THAN_THRESHOLD
    return [
        ModelSignal("score-drift", "ScoreDrift", "MAX", rules.psi_threshold, above, "The score distribution drifted."),
        ModelSignal("high-risk-rate", "HighRiskRate", "MAX", rules.high_risk_rate_alarm, above,
                    "The share of high-risk scores left its band."),
        ModelSignal("data-quality", "RefusedShare", "MAX", rules.refused_share_alarm, above,
                    "Too many requests were refused by validation (422)."),
        ModelSignal("realized-auc", "RealizedAUC", "MIN", gate.auc_floor, below,
                    "The AUC measured on joined outcomes fell below the gate's floor."),
        ModelSignal("calibration-over", "ObservedToExpected", "MAX", high, above,
                    "More outcomes than the probabilities predict (observed/expected above the band)."),
        ModelSignal("calibration-under", "ObservedToExpected", "MIN", low, below,
                    "Fewer outcomes than the probabilities predict (observed/expected below the band)."),
        # 1 when any attribute's gap is above the gate's limit for it (age bands have their own).
        ModelSignal("fairness-gap", "SubgroupAUCGapAboveLimit", "MAX", 0.5, above,
                    "The AUC gap between subgroups is above the gate's limit for their attribute."),
    ]  # fmt: skip


def task_rules(
    tasks: Iterable[str], monitoring: MonitoringRules, gate: GateRules
) -> dict[str, tuple[MonitoringRules, GateRules]]:
    """Each task's alarm levels: the deployment's, with what its task file overrides (as the local
    alarms and training's gate judge it, `clinrisk.taskspec.rules`)."""
    specs = {task: catalogue.find_task(task, catalogue.TASKS_DIR).spec for task in tasks}
    return {task: (task_monitoring(spec, monitoring), task_gate(spec, gate)) for task, spec in specs.items()}


class ModelAlarms(Construct):
    """`alarms`: (alarm name, alarm, what it watches), for the notices and the dashboard."""

    alarms: list[tuple[str, cloudwatch.Alarm, WatchedMetric]]

    def __init__(
        self, scope: Construct, id: str, *, name: str, rules: Mapping[str, tuple[MonitoringRules, GateRules]]
    ) -> None:
        super().__init__(scope, id)
        self.alarms = []
        for task, (monitoring, gate) in rules.items():
            for signal in model_signals(monitoring, gate):
                watched = WatchedMetric(
                    task=task, metric=signal.metric, worst=signal.worst, period_seconds=int(PERIOD.to_seconds())
                )
                alarm_name = f"{name}-model-{task}-{signal.id}"
                alarm = cloudwatch.Alarm(
                    self,
                    f"{task}-{signal.id}",
                    alarm_name=alarm_name,
                    alarm_description=f"{task}: {signal.description} Notified with the model version by"
                    " the alarm-notice function.",
                    metric=cloudwatch.MathExpression(
                        expression=watched.query(), period=PERIOD, label=f"{task} {signal.metric}", using_metrics={}
                    ),
                    threshold=signal.threshold,
                    evaluation_periods=1,
                    comparison_operator=signal.comparison,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
                acknowledge(
                    alarm,
                    "HIPAA.Security-CloudWatchAlarmAction",
                    "The alarm notifies through EventBridge: its state changes start the alarm-notice function,"
                    " which sends them to the alerts topic with the model version in the subject, which an SNS"
                    " alarm action cannot carry (cdk_app/constructs/alarm_notices.py).",
                )
                self.alarms.append((alarm_name, alarm, watched))
