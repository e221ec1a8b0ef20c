"""The scheduled monitor in the cloud runs for every task with captures (issue 14 part 6): each task's
window against its own champion's reference, found through its own serving pointer, published under
its own Task dimension; a task without a champion publishes nothing; one task's failure is raised
after the others' metrics are out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from clinrisk.adapters.local import DirectoryObjectStore
from clinrisk.capture.local_sink import ParquetCaptureSink
from clinrisk.checksums import directory_checksum
from clinrisk.monitoring.cloud import MonitorFailedError, captured_tasks, monitor_every_task_in_cloud
from clinrisk.monitoring.reference import MonitoringReference
from clinrisk.registry.serving_pointer import ServingPointer, pointer_key, write_pointer
from clinrisk.settings import MonitoringRules, Settings
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.unit.monitoring.heart_helpers import HEART, heart_capture_rows, heart_records, heart_reference
from tests.unit.monitoring.helpers import capture_table, reference_of

BUCKET = "clinrisk-capture"
NOW = datetime.now(UTC)
AT = NOW - timedelta(hours=1)


def _champion(store: DirectoryObjectStore, root: Path, task: str, reference: MonitoringReference) -> None:
    model = root / "models" / task
    model.mkdir(parents=True)
    reference.save(model)
    pointer = ServingPointer(
        model_name=task, version=1, model_uri=f"models:/{task}/1", artifact_prefix=f"models/{task}",
        checksum=directory_checksum(model), run_id="r", promoted_at=NOW,
    )  # fmt: skip
    write_pointer(store, pointer, pointer_key(task))


def _upload(s3: Any, tmp: Path, rows: list[dict[str, Any]]) -> None:
    sink_root = tmp / "captures"
    ParquetCaptureSink(sink_root).put(rows)
    for path in sink_root.rglob("*.parquet"):
        s3.upload_file(str(path), BUCKET, f"captures/{path.relative_to(sink_root).as_posix()}")


def _readmission_rows() -> list[dict[str, Any]]:
    rows = capture_table(generate_cohort(800, seed=2), version=1, at=AT.timestamp()).to_pylist()
    return [row | {"date": AT.strftime("%Y-%m-%d")} for row in rows]


def _two_champions(tmp_path: Path) -> tuple[Any, DirectoryObjectStore]:
    """The capture bucket, and a store with a champion for readmission and one for heart disease."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    store = DirectoryObjectStore(tmp_path / "store")
    _champion(store, tmp_path / "store", "readmission", reference_of(generate_cohort(3000, seed=1)))
    _champion(store, tmp_path / "store", HEART, heart_reference(heart_records(tmp_path / "ref", rows=1500, seed=5)))
    return s3, store


@mock_aws
def test_every_task_with_captures_is_monitored_against_its_own_champion(tmp_path: Path) -> None:
    s3, store = _two_champions(tmp_path)
    shifted = heart_records(tmp_path / "now", rows=900, seed=21, chol_shift=90.0)
    _upload(s3, tmp_path / "h", heart_capture_rows(shifted, version=1, at=AT.timestamp(), date=AT.strftime("%Y-%m-%d")))
    _upload(s3, tmp_path / "r", _readmission_rows())
    _upload(s3, tmp_path / "s", [row | {"task": "stroke"} for row in _readmission_rows()[:600]])  # no champion
    assert captured_tasks(s3, BUCKET, "captures/") == [HEART, "readmission", "stroke"]

    settings = Settings(home=tmp_path, monitoring=MonitoringRules(capture_bucket=BUCKET))
    lines: list[str] = []
    results = monitor_every_task_in_cloud(settings, s3=s3, store=store, now=NOW, write=lines.append)
    by_task = {r.task: r for r in results}
    assert set(by_task) == {HEART, "readmission"}  # stroke has captures but no champion: nothing to compare
    assert (by_task[HEART].rows, by_task[HEART].drifted_fields) == (900, ["chol"])
    assert (by_task["readmission"].rows, by_task["readmission"].drifted_fields) == (800, [])
    drift = {r["Task"]: r["FeatureDrift"] for r in map(json.loads, lines) if "Environment" in r}
    assert drift == pytest.approx(
        {HEART: by_task[HEART].feature_drift, "readmission": by_task["readmission"].feature_drift}
    )
    per_version = {(r["task"], r["model_version"]) for r in map(json.loads, lines) if "EstimatedAUC" in r}
    assert per_version == {(HEART, "1"), ("readmission", "1")}


@mock_aws
def test_one_tasks_failure_is_raised_after_the_others_are_published(tmp_path: Path) -> None:
    s3, store = _two_champions(tmp_path)
    (tmp_path / "store" / "models" / HEART / "monitoring_reference.json").write_text("{}")  # corrupt: checksum fails
    rows = heart_records(tmp_path / "now", rows=600, seed=21)
    _upload(s3, tmp_path / "h", heart_capture_rows(rows, version=1, at=AT.timestamp(), date=AT.strftime("%Y-%m-%d")))
    _upload(s3, tmp_path / "r", _readmission_rows())
    settings = Settings(home=tmp_path, monitoring=MonitoringRules(capture_bucket=BUCKET))
    lines: list[str] = []
    with pytest.raises(MonitorFailedError, match=f"failed for {HEART}"):
        monitor_every_task_in_cloud(settings, s3=s3, store=store, now=NOW, write=lines.append)
    assert {json.loads(line).get("Task") for line in lines if "Environment" in json.loads(line)} == {"readmission"}
