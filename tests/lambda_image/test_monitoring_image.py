"""The monitoring image's content, run without Docker: the real handlers, in a CPython 3.12 venv built
from the image's own lock, with only the image's code importable, against a moto server and real
event shapes. The captures are Parquet files written by our own capture code."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import numpy as np
import pytest

from cdk_app.monitoring_image import (
    DOCKERFILE,
    LOCK_FILE,
    MONITOR_HANDLER,
    OUTCOMES_HANDLER,
)
from clinrisk.capture.keys import IdKeyer
from clinrisk.capture.local_sink import ParquetCaptureSink
from clinrisk.checksums import directory_checksum
from clinrisk.registry.serving_pointer import POINTER_KEY, ServingPointer, pointer_key
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.aws_events import s3_object_created, sqs_batch
from tests.lambda_image.conftest import REGION, ImageFunction, Invocation
from tests.lambda_image.environment import image_python_version
from tests.unit.monitoring.heart_helpers import HEART, heart_capture_rows, heart_records, heart_reference
from tests.unit.monitoring.helpers import capture_table, reference_of

pytestmark = pytest.mark.image

CAPTURE, ARTIFACTS, DATA = "clinrisk-capture", "clinrisk-artifacts", "clinrisk-data"
NOW = datetime.now(UTC)


def _clients(endpoint: str) -> dict[str, Any]:
    return {name: boto3.client(name, region_name=REGION, endpoint_url=endpoint,
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            for name in ("s3", "secretsmanager")}  # fmt: skip


# --------------------------------------------------------------------------- the image and its lock


def test_the_dockerfile_installs_the_lock_the_tests_build_on_the_python_they_run(image_env: Path) -> None:
    text = DOCKERFILE.read_text()
    assert f"COPY {LOCK_FILE.name} " in text and f'-r "${{LAMBDA_TASK_ROOT}}/{LOCK_FILE.name}"' in text
    assert "--no-deps" in text  # the lock is the whole environment, in the image as in the tests
    version = (image_env / "pyvenv.cfg").read_text()
    assert f"version = {image_python_version()}." in version or f"version_info = {image_python_version()}." in version
    installed = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in subprocess.run(
            [str(image_env / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout.split()
    }
    pinned = {
        line.split("#")[0].strip().split("==")[0].split("[")[0].lower(): line.split("#")[0].strip().split("==")[1]
        for line in LOCK_FILE.read_text().splitlines()
        if "==" in line.split("#")[0]
    }
    assert {name: installed.get(name) for name in pinned} == pinned


def test_the_image_holds_no_developer_only_code(task_root: Path) -> None:
    assert not (task_root / "clinrisk" / "local").exists()
    assert sorted(p.name for p in (task_root / "lambdas").iterdir() if p.is_dir()) == [
        "alarm_notice", "monitor", "outcomes"
    ]  # fmt: skip


# --------------------------------------------------------------------------- the monitor


def _champion(s3: Any, root: Path, version: int) -> None:
    model = root / f"v{version}"
    model.mkdir(parents=True)
    reference_of(generate_cohort(3000, seed=1)).save(model)
    for path in model.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), ARTIFACTS, f"models/v{version}/{path.relative_to(model).as_posix()}")
    pointer = ServingPointer(
        model_name="m", version=version, model_uri=f"models:/m/{version}", artifact_prefix=f"models/v{version}",
        checksum=directory_checksum(model), run_id="r", promoted_at=NOW,
    )  # fmt: skip
    s3.put_object(Bucket=ARTIFACTS, Key=POINTER_KEY, Body=pointer.model_dump_json().encode())


def _captures(s3: Any, root: Path, *, version: int, rows: int) -> None:
    """A shifted window, written by the capture sink and uploaded where Firehose puts it."""
    frame = SHIFTS["lab_missing"](generate_cohort(rows, seed=2), np.random.default_rng(0))
    records = capture_table(frame, version=version, at=(NOW - timedelta(hours=1)).timestamp()).to_pylist()
    for record in records:
        record["date"] = (NOW - timedelta(hours=1)).strftime("%Y-%m-%d")
    ParquetCaptureSink(root).put(records)
    for path in root.rglob("*.parquet"):
        s3.upload_file(str(path), CAPTURE, f"captures/{path.relative_to(root).as_posix()}")


def _scheduled_run(image_function: ImageFunction, tmp_path: Path, *, rows: int) -> Invocation:
    """The champion v3 and a window of `rows` captures in S3, then the monitor's scheduled run."""
    s3 = _clients(image_function.endpoint)["s3"]
    for bucket in (CAPTURE, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    _champion(s3, tmp_path / "models", 3)
    _captures(s3, tmp_path / "captures", version=3, rows=rows)
    environment = {"CLINRISK_BACKEND": "aws", "CLINRISK_HOME": str(tmp_path / "home"),
                   "CLINRISK_ARTIFACTS_BUCKET": ARTIFACTS, "CLINRISK_MONITORING__CAPTURE_BUCKET": CAPTURE,
                   "CLINRISK_MONITORING__ENVIRONMENT": "dev"}  # fmt: skip
    return image_function.invoke(MONITOR_HANDLER, SCHEDULED_EVENT, environment)


SCHEDULED_EVENT = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2027-01-15T10:00:00Z", "region": REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/clinrisk-monitor"], "detail": {},
}  # fmt: skip


def test_the_monitor_reads_parquet_captures_from_s3_and_publishes_feature_drift(
    image_function: ImageFunction, tmp_path: Path
) -> None:
    run = _scheduled_run(image_function, tmp_path, rows=800)
    [result] = run.answer["results"]
    assert result["model_version"] == 3 and result["rows"] == 800 and result["published"]
    assert result["drifted"][:1] == ["A1Cresult"]
    emf = [json.loads(line) for line in run.stdout if line.startswith('{"_aws"')]
    drift = [record for record in emf if "Environment" in record]
    assert len(drift) == 1 and drift[0]["Environment"] == "dev" and drift[0]["FeatureDrift"] > 0.25
    assert drift[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "clinrisk"


def test_a_window_below_the_minimum_publishes_nothing(image_function: ImageFunction, tmp_path: Path) -> None:
    run = _scheduled_run(image_function, tmp_path, rows=100)
    assert [r["published"] for r in run.answer["results"]] == [False]
    assert not [line for line in run.stdout if line.startswith('{"_aws"')]


# --------------------------------------------------------------------------- the outcomes intake


def test_outcome_files_are_keyed_and_a_missing_file_and_a_poison_message_fail_alone(
    image_function: ImageFunction, tmp_path: Path
) -> None:
    clients = _clients(image_function.endpoint)
    s3 = clients["s3"]
    for bucket in (CAPTURE, DATA):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=DATA, Key="outcomes/jan 2027.csv", Body=b"encounter_id,readmitted\n11,<30\nx,NO\n12,NO\n")
    secret = clients["secretsmanager"].create_secret(Name="id-key", SecretString="ab" * 32)["ARN"]
    event = sqs_batch(
        ("good", s3_object_created(DATA, "outcomes/jan 2027.csv")),
        ("missing", s3_object_created(DATA, "outcomes/never-put.csv")),
        ("poison", "this is not an event"),
    )
    environment = {
        "CLINRISK_BACKEND": "aws",
        "CLINRISK_HOME": str(tmp_path / "home"),
        "CLINRISK_MONITORING__CAPTURE_BUCKET": CAPTURE,
        "CLINRISK_MONITORING__ID_KEY_SECRET_ARN": secret,
    }
    run = image_function.invoke(OUTCOMES_HANDLER, event, environment)
    assert run.answer == {"batchItemFailures": [{"itemIdentifier": "missing"}, {"itemIdentifier": "poison"}]}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=CAPTURE)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("outcomes-keyed/task=readmission/")
    body = s3.get_object(Bucket=CAPTURE, Key=keys[0])["Body"].read()
    keyer = IdKeyer(bytes.fromhex("ab" * 32))
    assert keyer.record_key(11).encode() in body and keyer.record_key(12).encode() in body
    logged = "\n".join(run.stdout)
    assert '"bad_rows"' in logged and "row" in logged and ",NO" not in logged  # row numbers, never values


def _heart_champion(s3: Any, root: Path) -> None:
    """Heart disease's v1 reference in the artifacts bucket, and its serving pointer naming it."""
    model = root / "heart-model"
    model.mkdir()
    heart_reference(heart_records(root / "ref", rows=1500, seed=5)).save(model)
    s3.upload_file(str(model / "monitoring_reference.json"), ARTIFACTS, "models/heart/monitoring_reference.json")
    pointer = ServingPointer(
        model_name="clinrisk-heart-disease", version=1, model_uri="models:/clinrisk-heart-disease/1",
        artifact_prefix="models/heart", checksum=directory_checksum(model), run_id="r", promoted_at=NOW,
    )  # fmt: skip
    s3.put_object(Bucket=ARTIFACTS, Key=pointer_key(HEART), Body=pointer.model_dump_json().encode())


def test_one_scheduled_run_monitors_every_task_with_captures(image_function: ImageFunction, tmp_path: Path) -> None:
    """Readmission and heart disease, each with its champion and captures: the image's monitor reads
    heart disease's inputs map and finds its planted chol shift."""
    s3 = _clients(image_function.endpoint)["s3"]
    for bucket in (CAPTURE, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    _champion(s3, tmp_path / "models", 3)
    _captures(s3, tmp_path / "captures", version=3, rows=800)
    _heart_champion(s3, tmp_path)
    at = NOW - timedelta(hours=1)
    shifted = heart_records(tmp_path / "now", rows=900, seed=21, chol_shift=90.0)
    heart_root = tmp_path / "heart-captures"
    ParquetCaptureSink(heart_root).put(heart_capture_rows(shifted, version=1, at=at.timestamp(), date=f"{at:%Y-%m-%d}"))
    for path in heart_root.rglob("*.parquet"):
        s3.upload_file(str(path), CAPTURE, f"captures/{path.relative_to(heart_root).as_posix()}")
    environment = {"CLINRISK_BACKEND": "aws", "CLINRISK_HOME": str(tmp_path / "home"),
                   "CLINRISK_ARTIFACTS_BUCKET": ARTIFACTS, "CLINRISK_MONITORING__CAPTURE_BUCKET": CAPTURE,
                   "CLINRISK_MONITORING__ENVIRONMENT": "dev"}  # fmt: skip
    run = image_function.invoke(MONITOR_HANDLER, SCHEDULED_EVENT, environment)
    by_task = {r["task"]: r for r in run.answer["results"]}
    assert (by_task[HEART]["rows"], by_task[HEART]["drifted"]) == (900, ["chol"])
    assert by_task["readmission"]["drifted"][:1] == ["A1Cresult"]
    emf = [json.loads(line) for line in run.stdout if line.startswith('{"_aws"')]
    assert {r["Task"] for r in emf if "Environment" in r} == {HEART, "readmission"}


def test_a_tasks_outcome_file_is_read_by_its_task_file_and_its_realized_auc_published(
    image_function: ImageFunction, tmp_path: Path
) -> None:
    """Heart disease in the image (PyYAML and tasks/ in it): `outcomes/heart-disease/<file>` is keyed
    by the intake as its captures were, and the scheduled monitor joins them and publishes the task's
    realized AUC, observed/expected and its own subgroups' gaps under the task's dimension."""
    clients = _clients(image_function.endpoint)
    s3 = clients["s3"]
    for bucket in (CAPTURE, ARTIFACTS, DATA):
        s3.create_bucket(Bucket=bucket)
    _heart_champion(s3, tmp_path)
    keyer = IdKeyer(bytes.fromhex("ab" * 32))
    records = heart_records(tmp_path / "now", rows=900, seed=21)
    at = NOW - timedelta(hours=1)
    rows = heart_capture_rows(records, version=1, at=at.timestamp(), date=f"{at:%Y-%m-%d}")
    for row, record in zip(rows, records, strict=True):
        row["record_key"] = keyer.record_key(record["row_id"])  # as capture keys a task's record id
    heart_root = tmp_path / "heart-captures"
    ParquetCaptureSink(heart_root).put(rows)
    for path in heart_root.rglob("*.parquet"):
        s3.upload_file(str(path), CAPTURE, f"captures/{path.relative_to(heart_root).as_posix()}")
    outcomes = "row_id,num\n" + "".join(f"{r['row_id']},{int(r['num'])}\n" for r in records)
    s3.put_object(Bucket=DATA, Key="outcomes/heart-disease/dec.csv", Body=outcomes.encode())
    secret = clients["secretsmanager"].create_secret(Name="id-key", SecretString="ab" * 32)["ARN"]
    environment = {
        "CLINRISK_BACKEND": "aws",
        "CLINRISK_HOME": str(tmp_path / "home"),
        "CLINRISK_ARTIFACTS_BUCKET": ARTIFACTS,
        "CLINRISK_MONITORING__CAPTURE_BUCKET": CAPTURE,
        "CLINRISK_MONITORING__ID_KEY_SECRET_ARN": secret,
        "CLINRISK_MONITORING__ENVIRONMENT": "dev",
    }

    intake = image_function.invoke(
        OUTCOMES_HANDLER, sqs_batch(("heart", s3_object_created(DATA, "outcomes/heart-disease/dec.csv"))), environment
    )
    assert intake.answer == {"batchItemFailures": []}
    keyed = [o["Key"] for o in s3.list_objects_v2(Bucket=CAPTURE, Prefix="outcomes-keyed/")["Contents"]]
    assert len(keyed) == 1 and keyed[0].startswith("outcomes-keyed/task=heart-disease/")

    run = image_function.invoke(MONITOR_HANDLER, SCHEDULED_EVENT, environment)
    emf = [json.loads(line) for line in run.stdout if line.startswith('{"_aws"')]
    [realized] = [r for r in emf if "RealizedAUC" in r]
    assert (realized["task"], realized["model_version"], realized["OutcomesJoined"]) == (HEART, "1", 900)
    assert 0.5 < realized["RealizedAUC"] < 1 and realized["ObservedToExpected"] > 0
    assert "SubgroupAUCGap_sex" in realized and "SubgroupAUCGap_race" not in realized
