"""The local stand-ins for the CloudWatch alarms and the EventBridge rule on the drift alarm.

Each alarm has a state (OK or ALARM) kept in a file; an unpublished window leaves it as it is
(missing data is not breaching, as the cloud alarms treat it). Every transition is sent to the
notifier with a subject naming the task, the metric and the model version. The drift alarm's
transition into ALARM, and only that, starts one retraining run, unless one is already running.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clinrisk.monitoring.monitor import MonitorResult
from clinrisk.monitoring.outcomes import RealizedPerformance
from clinrisk.ports import Notifier
from clinrisk.settings import Settings

State = Literal["OK", "ALARM"]
DRIFT_ALARM = "feature-drift"


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    breaching: Callable[[MonitorResult, Settings], bool | None]  # None: nothing to judge


def _score_drift(r: MonitorResult, s: Settings) -> bool | None:
    if r.score_psi is None or r.score_critical is None:
        return None
    return r.score_psi > max(s.monitoring.psi_threshold, r.score_critical)


RULES: tuple[Rule, ...] = (
    Rule(DRIFT_ALARM, "FeatureDrift", lambda r, s: r.drift if r.published else None),
    Rule("score-drift", "ScoreDrift", _score_drift),
    Rule(
        "high-risk-rate",
        "HighRiskRate",
        lambda r, s: None if r.high_risk_rate is None else r.high_risk_rate > s.monitoring.high_risk_rate_alarm,
    ),
    Rule(
        "data-quality",
        "RefusedShare",
        lambda r, s: None if r.refused_share is None else r.refused_share > s.monitoring.refused_share_alarm,
    ),
    Rule(
        "attribution-drift",
        "AttributionNDCG",
        lambda r, s: None if r.attribution_ndcg is None else r.attribution_ndcg < s.monitoring.attribution_ndcg_alarm,
    ),
)


@dataclass(frozen=True)
class RealizedRule:
    name: str
    metric: str
    breaching: Callable[[RealizedPerformance], bool | None]


REALIZED_RULES: tuple[RealizedRule, ...] = (
    RealizedRule("realized-auc", "RealizedAUC", lambda r: r.auc_below_floor),
    RealizedRule("calibration", "ObservedToExpected", lambda r: r.calibration_outside_band),
    RealizedRule("fairness-gap", "SubgroupAUCGap", lambda r: r.gap_above_limit),
)


@dataclass(frozen=True)
class Transition:
    alarm: str
    metric: str
    version: int
    state: State


class LocalAlarms:
    def __init__(self, path: Path, notifier: Notifier, settings: Settings) -> None:
        self.path = path
        self.notifier = notifier
        self.settings = settings

    def states(self) -> dict[str, State]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def evaluate(
        self, results: list[MonitorResult], realized: list[RealizedPerformance] | None = None
    ) -> list[Transition]:
        states = self.states()
        judged: list[_Judged] = []
        for result in results:
            detail = {"rows": result.rows, "drifted_fields": result.drifted_fields}
            judged += [_judged(rule, result, rule.breaching(result, self.settings), detail) for rule in RULES]
        for performance in realized or []:
            detail = {"outcomes": performance.outcomes, "breaches": performance.breaches}
            judged += [_judged(rule, performance, rule.breaching(performance), detail) for rule in REALIZED_RULES]
        transitions = []
        for name, metric, task, version, breaching, detail in judged:
            if breaching is None:
                continue  # nothing to judge: the alarm keeps its state
            key = f"{name}/v{version}"
            state: State = "ALARM" if breaching else "OK"
            if states.get(key, "OK") != state:
                transitions.append(Transition(name, metric, version, state))
                self.notifier.publish(
                    alarm_subject(state, task=task, metric=metric, version=version),
                    {"alarm": name, "task": task, "metric": metric, "model_version": version, "state": state, **detail},
                )
            states[key] = state
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(states, indent=1))
        return transitions


# (alarm, metric, task, model version, breaching or None when there is nothing to judge, detail)
_Judged = tuple[str, str, str, int, bool | None, dict[str, object]]


def _judged(
    rule: Rule | RealizedRule,
    subject: MonitorResult | RealizedPerformance,
    breaching: bool | None,
    detail: dict[str, object],
) -> _Judged:
    return (rule.name, rule.metric, subject.task, subject.model_version, breaching, detail)


def alarm_subject(state: str, *, task: str, metric: str, version: int | str | None) -> str:
    """The subject of an alarm's notice, locally and in the cloud: its state, task, metric and model version."""
    return f"clinrisk {state}: {task} {metric} model " + (f"v{version}" if version is not None else "version unknown")


def drift_started(transitions: list[Transition]) -> bool:
    """The EventBridge rule's pattern: the drift alarm's state changed into ALARM."""
    return any(t.alarm == DRIFT_ALARM and t.state == "ALARM" for t in transitions)
