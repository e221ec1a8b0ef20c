"""The cloud monitor and outcomes intake against moto's S3, Secrets Manager and SQS event shapes:
the same domain code as locally, with S3 in between."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from clinrisk.adapters.local import DirectoryObjectStore
from clinrisk.capture.keys import IdKeyer
from clinrisk.capture.local_sink import ParquetCaptureSink
from clinrisk.checksums import directory_checksum
from clinrisk.monitoring.cloud import monitor_in_cloud
from clinrisk.registry.serving_pointer import ChallengerRoute, ServingPointer, write_pointer
from clinrisk.settings import MonitoringRules, Settings
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.aws_events import s3_object_created, sqs_batch
from tests.unit.monitoring.helpers import capture_table, reference_of

BUCKET = "clinrisk-capture"
NOW = datetime.now(UTC)


def _model(root: Path, version: int) -> str:
    model = root / "models" / f"v{version}"
    model.mkdir(parents=True)
    reference_of(generate_cohort(3000, seed=1)).save(model)
    return directory_checksum(model)


def _store_with_champion(root: Path, *, canary: int | None = None) -> DirectoryObjectStore:
    store = DirectoryObjectStore(root)
    challenger = None
    if canary is not None:
        checksum = _model(root, canary)
        challenger = ChallengerRoute(version=canary, artifact_prefix=f"models/v{canary}", checksum=checksum,
                                     mode="canary", fraction=0.5)  # fmt: skip
    pointer = ServingPointer(
        model_name="m", version=3, model_uri="models:/m/3", artifact_prefix="models/v3",
        checksum=_model(root, 3), run_id="r", promoted_at=NOW, challenger=challenger,
    )  # fmt: skip
    write_pointer(store, pointer)
    return store


def _upload_captures(s3: Any, tmp: Path, *, versions: tuple[int, ...] = (3,)) -> None:
    import numpy as np

    frame = SHIFTS["coding_change"](generate_cohort(800, seed=2), np.random.default_rng(0))
    for version in versions:
        rows = capture_table(frame, version=version, at=(NOW - timedelta(hours=1)).timestamp()).to_pylist()
        for row in rows:
            row["date"] = (NOW - timedelta(hours=1)).strftime("%Y-%m-%d")
        ParquetCaptureSink(tmp / "captures").put(rows)
    for path in (tmp / "captures").rglob("*.parquet"):
        s3.upload_file(str(path), BUCKET, f"captures/{path.relative_to(tmp / 'captures').as_posix()}")


@mock_aws
def test_the_scheduled_monitor_reads_captures_from_s3_and_writes_emf(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    _upload_captures(s3, tmp_path)
    settings = Settings(home=tmp_path, monitoring=MonitoringRules(capture_bucket=BUCKET))
    lines: list[str] = []
    [result] = monitor_in_cloud(settings, s3=s3, store=_store_with_champion(tmp_path / "store"), now=NOW,
                                write=lines.append)  # fmt: skip
    assert result.model_version == 3 and result.rows == 800 and result.drifted_fields[:1] == ["diag_1"]
    drift = [json.loads(line) for line in lines if "Environment" in json.loads(line)]
    assert drift and drift[0]["FeatureDrift"] == pytest.approx(result.feature_drift)
    assert drift[0]["Task"] == "readmission"  # the dimension the task's drift alarm selects


@mock_aws
def test_a_routed_challengers_drift_is_not_published_where_the_retraining_alarm_watches(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    _upload_captures(s3, tmp_path, versions=(3, 4))
    settings = Settings(home=tmp_path, monitoring=MonitoringRules(capture_bucket=BUCKET))
    lines: list[str] = []
    store = _store_with_champion(tmp_path / "store", canary=4)
    results = monitor_in_cloud(settings, s3=s3, store=store, now=NOW, write=lines.append)
    assert sorted((r.model_version, r.published) for r in results) == [(3, True), (4, True)]
    records = [json.loads(line) for line in lines]
    # Both versions' drift is published per version; only the champion's under Environment.
    assert {r["model_version"] for r in records if "FeatureDrift" in r and "model_version" in r} == {"3", "4"}
    assert [r.get("model_version") for r in records if "Environment" in r] == [None]
    by_champion = next(r for r in records if r.get("model_version") == "3" and "FeatureDrift" in r)
    assert next(r for r in records if "Environment" in r)["FeatureDrift"] == by_champion["FeatureDrift"]


def _outcomes_handler(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], Any]:
    """The outcomes function with its id key in moto's Secrets Manager and the capture bucket set."""
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="k", SecretString="cd" * 32)["ARN"]
    monkeypatch.setenv("CLINRISK_MONITORING__CAPTURE_BUCKET", BUCKET)
    monkeypatch.setenv("CLINRISK_MONITORING__ID_KEY_SECRET_ARN", arn)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from lambdas.outcomes import handler as module

    module._clients.cache_clear()

    class Context:
        function_name, memory_limit_in_mb, invoked_function_arn, aws_request_id = "f", 256, "arn:aws:lambda:::f", "r"

    return lambda event: module.handler(event, Context())  # type: ignore[arg-type]


@mock_aws
def test_an_outcomes_file_is_keyed_into_the_capture_bucket_and_a_bad_message_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="clinrisk-data")
    s3.put_object(Bucket="clinrisk-data", Key="outcomes/jan.csv", Body=b"encounter_id,readmitted\n11,<30\nx,NO\n")
    event = sqs_batch(("ok", s3_object_created("clinrisk-data", "outcomes/jan.csv")),
                      ("bad", s3_object_created("clinrisk-data", "outcomes/gone.csv")))  # fmt: skip
    answer = _outcomes_handler(monkeypatch)(event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("outcomes-keyed/task=readmission/")
    body = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
    assert IdKeyer(bytes.fromhex("cd" * 32)).record_key(11).encode() in body and b",11," not in body


@mock_aws
def test_a_tasks_outcome_file_under_its_folder_is_read_by_its_task_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outcomes/heart-disease/<file>`: heart disease's record id and target (num > 0 is positive),
    keyed as its captures are, stored under its own partition. A folder naming no task, and a file of
    another task, fail their message alone (retried, then kept in the dead-letter queue)."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="clinrisk-data")
    heart = b"row_id,num\ncleveland-1,0\ncleveland-2,3\ncleveland-3,?\n"
    s3.put_object(Bucket="clinrisk-data", Key="outcomes/heart-disease/dec.csv", Body=heart)
    s3.put_object(Bucket="clinrisk-data", Key="outcomes/sepsis/dec.csv", Body=heart)
    wrong = b"encounter_id,readmitted\n11,<30\n"
    s3.put_object(Bucket="clinrisk-data", Key="outcomes/heart-disease/r.csv", Body=wrong)
    event = sqs_batch(("heart", s3_object_created("clinrisk-data", "outcomes/heart-disease/dec.csv")),
                      ("unknown", s3_object_created("clinrisk-data", "outcomes/sepsis/dec.csv")),
                      ("wrong", s3_object_created("clinrisk-data", "outcomes/heart-disease/r.csv")))  # fmt: skip
    answer = _outcomes_handler(monkeypatch)(event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "unknown"}, {"itemIdentifier": "wrong"}]}
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert key.startswith("outcomes-keyed/task=heart-disease/")
    import pyarrow.parquet as pq

    s3.download_file(BUCKET, key, str(tmp_path / "keyed.parquet"))
    stored = pq.read_table(tmp_path / "keyed.parquet").select(["record_key", "label"]).to_pylist()
    keyer = IdKeyer(bytes.fromhex("cd" * 32))
    assert stored == [{"record_key": keyer.record_key("cleveland-1"), "label": 0},
                      {"record_key": keyer.record_key("cleveland-2"), "label": 1}]  # fmt: skip
