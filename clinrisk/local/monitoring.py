"""`clinrisk monitor run` on this machine: read the window, monitor each version, write the EMF
lines to the local metrics log, evaluate the local alarms, and let the local rule start a
retraining when the drift alarm goes into ALARM."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clinrisk.monitoring.alarms import LocalAlarms, Transition
from clinrisk.monitoring.monitor import MonitorResult
from clinrisk.monitoring.outcomes import (
    RealizedPerformance,
    outcome_task,
    read_outcome_table,
    realized_emf,
    realized_performance,
)
from clinrisk.monitoring.retraining_rule import on_alarm_transitions
from clinrisk.monitoring.window import (
    NAMESPACE,
    load_reference,
    local_metrics_writer,
    monitored_versions,
    publish,
    read_window,
    run_monitor,
    window_ending,
)
from clinrisk.runtime import Ports
from clinrisk.settings import DEFAULT_TASK, Settings


@dataclass(frozen=True)
class LocalRun:
    results: list[MonitorResult]
    realized: list[RealizedPerformance]
    transitions: list[Transition]
    retraining: Any | None


def monitor_locally(
    settings: Settings, ports: Ports, *, hours: float, now: datetime, retrain: Callable[[], Any]
) -> LocalRun:
    window = window_ending(now, hours)
    captures = read_window(settings.captures_root, task=settings.monitoring.task, start=window[0], end=window[1])
    served = monitored_versions(ports.store, settings.monitoring.task)  # the champion first
    references = {files.version: load_reference(ports.store, files) for files in served}
    results = run_monitor(captures, references, settings, window=window)
    write = local_metrics_writer(settings)
    publish(results, settings, write, now=now, champion=served[0].version if served else None)
    realized = realized_over_outcome_window(settings, now=now)
    for performance in realized:
        write(json.dumps(realized_emf(performance, namespace=NAMESPACE, timestamp_ms=int(now.timestamp() * 1000))))
    state = task_monitor_dir(settings)
    alarms = LocalAlarms(state / "alarms.json", ports.notifier, _task_rules(settings))
    transitions = alarms.evaluate(results, realized)
    started = on_alarm_transitions(
        transitions, lock_path=state / "retraining.lock", notifier=ports.notifier, start=retrain
    )
    return LocalRun(results=results, realized=realized, transitions=transitions, retraining=started)


def task_monitor_dir(settings: Settings) -> Path:
    """Where the monitored task's alarm states and retraining lock live: each task has its own alarms
    (readmission's stay where they always were)."""
    task = settings.monitoring.task
    return settings.monitor_dir if task == DEFAULT_TASK else settings.monitor_dir / task


def _task_rules(settings: Settings) -> Settings:
    """The settings the task is judged by: its task file may set its own alarm levels (`monitoring:`)."""
    from clinrisk.data.task_binding import resolve_task

    return resolve_task(settings.monitoring.task).settings(settings)


def realized_over_outcome_window(settings: Settings, *, now: datetime) -> list[RealizedPerformance]:
    """Realized performance per version: the outcome window's captures joined to the outcomes received."""
    from clinrisk.data.task_binding import resolve_task

    start = now - timedelta(days=settings.monitoring.outcome_window_days)
    captures = read_window(settings.captures_root, task=settings.monitoring.task, start=start, end=now)
    outcomes = read_outcome_table(settings.outcomes_root, settings.monitoring.task)
    if not outcomes.num_rows:
        return []
    task = resolve_task(settings.monitoring.task)
    return realized_performance(captures, outcomes, _task_rules(settings), outcome_task(task))
