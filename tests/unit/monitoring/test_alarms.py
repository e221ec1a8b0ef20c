"""Local alarms and the drift rule: transitions only, subjects naming task/metric/version, one run at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from clinrisk.adapters.local import OutboxNotifier
from clinrisk.monitoring.alarms import DRIFT_ALARM, LocalAlarms
from clinrisk.monitoring.monitor import MonitorResult
from clinrisk.monitoring.retraining_rule import on_alarm_transitions
from clinrisk.settings import Settings

WINDOW = (datetime(2027, 1, 15, tzinfo=UTC), datetime(2027, 1, 16, tzinfo=UTC))


def _result(drifted: list[str], *, published: bool = True, high: float = 0.1) -> MonitorResult:
    return MonitorResult(
        task="readmission", model_version=4, window_start=WINDOW[0], window_end=WINDOW[1], rows=900,
        published=published, reason="ok", drifted_fields=drifted, feature_drift=0.4 if drifted else 0.05,
        high_risk_rate=high if published else None,
    )  # fmt: skip


def _outbox(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_drift_alarm_starts_one_retraining_on_its_transition_only(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    notifier = OutboxNotifier(outbox)
    alarms = LocalAlarms(tmp_path / "alarms.json", notifier, Settings(home=tmp_path))
    started: list[int] = []

    def rule(transitions):  # type: ignore[no-untyped-def]
        return on_alarm_transitions(
            transitions, lock_path=tmp_path / "r.lock", notifier=notifier, start=lambda: started.append(1)
        )

    rule(alarms.evaluate([_result([])]))
    assert started == [] and _outbox(outbox) == []
    first = alarms.evaluate([_result(["age"])])
    assert [(t.alarm, t.state) for t in first] == [(DRIFT_ALARM, "ALARM")]
    rule(first)
    rule(alarms.evaluate([_result(["age", "diag_1"])]))  # still in ALARM: no transition, no second run
    rule(alarms.evaluate([_result([], published=False)]))  # too few records: the state is kept
    assert started == [1]
    subjects = [entry["subject"] for entry in _outbox(outbox)]
    assert subjects == [
        "clinrisk ALARM: readmission FeatureDrift model v4",
        "clinrisk: retraining started by the drift alarm",
    ]


def test_a_drift_alarm_while_a_run_is_active_starts_nothing(tmp_path: Path) -> None:
    notifier = OutboxNotifier(tmp_path / "outbox.jsonl")
    alarms = LocalAlarms(tmp_path / "alarms.json", notifier, Settings(home=tmp_path))
    started: list[int] = []
    with FileLock(str(tmp_path / "r.lock")):  # a run is going
        result = on_alarm_transitions(
            alarms.evaluate([_result(["age"])]), lock_path=tmp_path / "r.lock", notifier=notifier,
            start=lambda: started.append(1),
        )  # fmt: skip
    assert result is None and started == []
    assert _outbox(tmp_path / "outbox.jsonl")[-1]["subject"] == "clinrisk: retraining not started (a run is active)"


def test_the_high_risk_rate_alarm_goes_and_comes_back(tmp_path: Path) -> None:
    notifier = OutboxNotifier(tmp_path / "outbox.jsonl")
    alarms = LocalAlarms(tmp_path / "alarms.json", notifier, Settings(home=tmp_path))
    assert [(t.alarm, t.state) for t in alarms.evaluate([_result([], high=0.3)])] == [("high-risk-rate", "ALARM")]
    assert [(t.alarm, t.state) for t in alarms.evaluate([_result([], high=0.1)])] == [("high-risk-rate", "OK")]


def test_a_task_file_sets_its_own_high_risk_level(tmp_path: Path) -> None:
    """Heart disease's task file sets 0.7: half of its referred patients scoring high is its normal,
    which the deployment's 0.20 (readmission's level) would alarm on in every window."""
    from clinrisk.data.task_binding import resolve_task

    settings = Settings(home=tmp_path)
    heart = resolve_task("heart-disease").settings(settings)
    assert (heart.monitoring.high_risk_rate_alarm, heart.monitoring.task) == (0.7, settings.monitoring.task)
    assert resolve_task("readmission").settings(settings).monitoring.high_risk_rate_alarm == 0.2
    notifier = OutboxNotifier(tmp_path / "outbox.jsonl")
    by_task = LocalAlarms(tmp_path / "task.json", notifier, heart)
    by_deployment = LocalAlarms(tmp_path / "deployment.json", notifier, settings)
    alarm = [("high-risk-rate", "ALARM")]
    assert by_task.evaluate([_result([], high=0.5)]) == []
    assert [(t.alarm, t.state) for t in by_deployment.evaluate([_result([], high=0.5)])] == alarm
    assert [(t.alarm, t.state) for t in by_task.evaluate([_result([], high=0.8)])] == alarm
