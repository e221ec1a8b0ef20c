"""`clinrisk monitor run` on this machine: read the window, monitor each version, write the EMF
lines to the local metrics log, evaluate the local alarms, and let the local rule start a
retraining when the drift alarm goes into ALARM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clinrisk.monitoring.alarms import LocalAlarms, Transition
from clinrisk.monitoring.monitor import MonitorResult
from clinrisk.monitoring.retraining_rule import on_alarm_transitions
from clinrisk.monitoring.window import (
    load_reference,
    local_metrics_writer,
    monitored_versions,
    publish,
    read_window,
    run_monitor,
    window_ending,
)
from clinrisk.runtime import Ports
from clinrisk.settings import Settings


@dataclass(frozen=True)
class LocalRun:
    results: list[MonitorResult]
    transitions: list[Transition]
    retraining: Any | None


def monitor_locally(
    settings: Settings, ports: Ports, *, hours: float, now: datetime, retrain: Callable[[], Any]
) -> LocalRun:
    window = window_ending(now, hours)
    captures = read_window(settings.captures_root, task=settings.monitoring.task, start=window[0], end=window[1])
    references = {files.version: load_reference(ports.store, files) for files in monitored_versions(ports.store)}
    results = run_monitor(captures, references, settings, window=window)
    publish(results, settings, local_metrics_writer(settings), now=now)
    transitions = LocalAlarms(settings.monitor_dir / "alarms.json", ports.notifier, settings).evaluate(results)
    started = on_alarm_transitions(
        transitions, lock_path=settings.monitor_dir / "retraining.lock", notifier=ports.notifier, start=retrain
    )
    return LocalRun(results=results, transitions=transitions, retraining=started)
