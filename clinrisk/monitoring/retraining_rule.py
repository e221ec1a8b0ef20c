"""The local stand-in for the EventBridge rule that starts a retraining on the drift alarm's
transition into ALARM. One run at a time: a second transition while a run holds the lock starts
nothing, and the outbox says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from clinrisk.monitoring.alarms import Transition, drift_started
from clinrisk.ports import Notifier


def on_alarm_transitions(
    transitions: list[Transition], *, lock_path: Path, notifier: Notifier, start: Callable[[], Any]
) -> Any | None:
    """Run `start` (the retraining) if the drift alarm just went into ALARM and no run is active;
    returns what `start` returned, or None when nothing was started."""
    if not drift_started(transitions):
        return None
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        notifier.publish("clinrisk: retraining not started (a run is active)", {"trigger": "drift-alarm"})
        return None
    try:
        notifier.publish("clinrisk: retraining started by the drift alarm", {"trigger": "drift-alarm"})
        return start()
    finally:
        lock.release()
