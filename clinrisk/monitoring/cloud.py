"""The monitor and the outcomes intake in the cloud: the same domain functions as locally, with the
captures and keyed outcomes read from S3 (downloaded for the window's date partitions, then read
as the local layout) and the metrics written as EMF lines to the function's log.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clinrisk.capture.keys import IdKeyer
from clinrisk.data.task_binding import resolve_task
from clinrisk.errors import ClinriskError
from clinrisk.monitoring.monitor import MonitorResult
from clinrisk.monitoring.outcomes import IngestReport, ingest_outcomes, outcome_task, read_outcome_table, realized_emf
from clinrisk.monitoring.outcomes import realized_performance as realized
from clinrisk.monitoring.window import (
    NAMESPACE,
    load_reference,
    monitored_versions,
    publish,
    read_window,
    run_monitor,
    window_ending,
)
from clinrisk.ports import ObjectStore
from clinrisk.settings import Settings


def download_prefix(s3: Any, bucket: str, prefix: str, directory: Path) -> int:
    """Every object under `prefix`, to the same relative path under `directory`; returns how many."""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = directory / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            count += 1
    return count


def _days(start: datetime, end: datetime) -> list[str]:
    return [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((end - start).days + 2)]


def monitor_in_cloud(
    settings: Settings, *, s3: Any, store: ObjectStore, now: datetime, write: Callable[[str], Any] = print
) -> list[MonitorResult]:
    """The scheduled run: the window's captures against each served version's reference, EMF out."""
    rules = settings.monitoring
    if rules.capture_bucket is None:
        raise ValueError("CLINRISK_MONITORING__CAPTURE_BUCKET is not set")
    window = window_ending(now, rules.window_hours)
    with tempfile.TemporaryDirectory(prefix="clinrisk-monitor-") as scratch:
        root = Path(scratch)
        for day in _days(window[0], window[1]):
            download_prefix(s3, rules.capture_bucket, f"{rules.capture_prefix}task={rules.task}/date={day}/", root)
        captures = read_window(root / rules.capture_prefix, task=rules.task, start=window[0], end=window[1])
        served = monitored_versions(store, rules.task)  # the champion first
        references = {files.version: load_reference(store, files) for files in served}
        results = run_monitor(captures, references, settings, window=window)
        publish(results, settings, write, now=now, champion=served[0].version if served else None)
        outcomes_root = root / "outcomes"
        download_prefix(s3, rules.capture_bucket, f"{rules.keyed_outcomes_prefix}task={rules.task}/", outcomes_root)
        outcomes = read_outcome_table(outcomes_root / rules.keyed_outcomes_prefix, rules.task)
        if outcomes.num_rows:
            task = resolve_task(rules.task)
            for performance in realized(captures, outcomes, task.settings(settings), outcome_task(task)):
                write(_json(realized_emf(performance, namespace=NAMESPACE, timestamp_ms=int(now.timestamp() * 1000))))
    return results


class MonitorFailedError(ClinriskError):
    """The monitor failed for some tasks (the others' metrics were published)."""


TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")  # as MonitoringRules.task
TASK_PARTITION = re.compile(rf"^task=({TASK_NAME.pattern})/$")


def captured_tasks(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The tasks with captures: the `task=<name>/` partitions right under the capture prefix."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            match = TASK_PARTITION.match(common["Prefix"][len(prefix) :])
            if match:
                names.append(match.group(1))
    return sorted(names)


def monitor_every_task_in_cloud(
    settings: Settings, *, s3: Any, store: ObjectStore, now: datetime, write: Callable[[str], Any] = print
) -> list[MonitorResult]:
    """The scheduled run over every task that has captures, each against its own champion's (and
    routed challenger's) reference, through its own serving pointer. One task's failure does not
    keep the others' metrics from being published; it is raised after them."""
    rules = settings.monitoring
    if rules.capture_bucket is None:
        raise ValueError("CLINRISK_MONITORING__CAPTURE_BUCKET is not set")
    results: list[MonitorResult] = []
    failed: list[str] = []
    for task in captured_tasks(s3, rules.capture_bucket, rules.capture_prefix):
        task_settings = settings.model_copy(update={"monitoring": rules.model_copy(update={"task": task})})
        try:
            results += monitor_in_cloud(task_settings, s3=s3, store=store, now=now, write=write)
        except Exception as error:  # the other tasks still get their run
            failed.append(f"{task} ({type(error).__name__})")
    if failed:
        raise MonitorFailedError(f"the monitor failed for {', '.join(failed)}")
    return results


class OutcomeKeyError(ClinriskError):
    """An outcome file's key names no task the way the intake reads it."""


def outcome_file_task(key: str, default: str) -> str:
    """The task an outcome file is of: `outcomes/<task>/<file>` names it; a file right under
    `outcomes/` is the default task's (readmission's, as before tasks)."""
    parts = key.split("/")
    if len(parts) <= 2:
        return default
    if not TASK_NAME.fullmatch(parts[1]):
        raise OutcomeKeyError(f"{key}: outcomes/<task>/<file> expected; the folder is not a task name")
    return parts[1]


def ingest_outcomes_object(
    settings: Settings, *, s3: Any, bucket: str, key: str, keyer: IdKeyer, now: datetime
) -> IngestReport:
    """One outcomes CSV dropped under `outcomes/` (readmission's) or `outcomes/<task>/` (that task's,
    read by its task file): keyed, and stored under the task's keyed-outcomes partition of the capture
    bucket. Matching against captures happens in the monitor, over its window."""
    rules = settings.monitoring
    if rules.capture_bucket is None:
        raise ValueError("CLINRISK_MONITORING__CAPTURE_BUCKET is not set")
    name = outcome_file_task(key, rules.task)
    reader = outcome_task(resolve_task(name))  # an unknown task fails the message (retried, then kept)
    with tempfile.TemporaryDirectory(prefix="clinrisk-outcomes-") as scratch:
        source = Path(scratch) / "outcomes.csv"
        s3.download_file(bucket, key, str(source))
        root = Path(scratch) / "keyed"
        report = ingest_outcomes(
            source, keyer=keyer, outcomes_root=root, captured_keys=set(), task=name, now=now, reader=reader
        )
        for path in root.rglob("*.parquet"):
            target = f"{rules.keyed_outcomes_prefix}{path.relative_to(root).as_posix()}"
            s3.upload_file(str(path), rules.capture_bucket, target)
    return report


def _json(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record)
