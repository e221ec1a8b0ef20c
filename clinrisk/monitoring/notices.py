"""Alarm notices in the cloud: a model alarm's state change (the EventBridge event CloudWatch sends)
becomes one message to the alerts topic whose subject names the task, the metric and the model
version, as the local alarms' do (`clinrisk.monitoring.alarms.alarm_subject`).

CloudWatch's own SNS action cannot do that: its subject is fixed, and the version is a dimension
value. The model alarms watch one Metrics Insights query per task and metric, the worst value over
every version (so a version deployed later is watched without a new alarm); which version that
was is asked of CloudWatch again here, with the same query grouped by version, over the alarm's
period ending at the state change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinrisk.monitoring.alarms import alarm_subject
from clinrisk.ports import Notifier

NAMESPACE = "clinrisk"


class WatchedMetric(BaseModel):
    """What one model alarm watches: a monitor metric of one task, worst over versions."""

    task: str
    metric: str
    worst: Literal["MAX", "MIN"]  # MAX for drift and rates, MIN for AUC and NDCG
    period_seconds: int = Field(3600, ge=60)

    def query(self, *, by_version: bool = False) -> str:
        """The Metrics Insights query the alarm evaluates (by_version: which version it was)."""
        select = (
            f'SELECT {self.worst}("{self.metric}") FROM SCHEMA("{NAMESPACE}", model_version, task)'
            f" WHERE task = '{self.task}'"
        )
        if not by_version:
            return select
        order = "DESC" if self.worst == "MAX" else "ASC"
        return f"{select} GROUP BY model_version ORDER BY {self.worst}() {order} LIMIT 1"


class NoticeSettings(BaseSettings):
    """The notice function's settings (CLINRISK_NOTICE_*): where to send, and each alarm's metric."""

    model_config = SettingsConfigDict(env_prefix="CLINRISK_NOTICE_", extra="ignore")

    topic_arn: str
    alarms: dict[str, WatchedMetric]


class _State(BaseModel):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    timestamp: datetime


class _Detail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    alarm_name: str = Field(alias="alarmName")
    state: _State
    previous_state: _State = Field(alias="previousState")


class AlarmStateChange(BaseModel):
    """The parts of CloudWatch's "CloudWatch Alarm State Change" event that a notice uses."""

    model_config = ConfigDict(populate_by_name=True)

    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    resources: list[str]
    detail: _Detail


def breaching_version(cloudwatch: Any, watched: WatchedMetric, *, at: datetime) -> str | None:
    """The model version whose series was the worst over the alarm's period ending `at`, or None."""
    period = timedelta(seconds=watched.period_seconds)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "version", "Expression": watched.query(by_version=True),
                            "Period": watched.period_seconds, "ReturnData": True}],
        StartTime=at - 2 * period,
        EndTime=at,
    )  # fmt: skip
    found = [r for r in answer.get("MetricDataResults", []) if r.get("Values")]
    return str(found[0]["Label"]) if found else None


def send_notice(
    change: AlarmStateChange, alarms: Mapping[str, WatchedMetric], *, cloudwatch: Any, notifier: Notifier
) -> str | None:
    """Publish the notice for a model alarm's change; returns its subject (None: not a model alarm)."""
    watched = alarms.get(change.detail.alarm_name)
    if watched is None:
        return None
    state = change.detail.state
    # On ALARM the version that breached; on OK the one that was worst, now within bounds.
    version = breaching_version(cloudwatch, watched, at=state.timestamp)
    subject = alarm_subject(state.value, task=watched.task, metric=watched.metric, version=version)
    notifier.publish(
        subject,
        {"alarm": change.detail.alarm_name, "task": watched.task, "metric": watched.metric, "model_version": version,
         "state": state.value, "previous_state": change.detail.previous_state.value, "reason": state.reason},
    )  # fmt: skip
    return subject
