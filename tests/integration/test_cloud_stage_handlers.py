"""The validate, evaluate and promote Lambdas on the aws backend, as the state machine calls them:
S3 (two buckets: data, artifacts) in moto, which answers by the S3 API's own model; real MLflow
(SQLite), real XGBoost. The model the evaluate Lambda unpacks is a real one, trained by
`sagemaker_jobs/train.py` on the channels the validate Lambda wrote, and packed as SageMaker packs
/opt/ml/model (tests/sagemaker_training.py)."""

from __future__ import annotations

import importlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from clinrisk.adapters.aws import S3ObjectStore
from clinrisk.checksums import directory_checksum
from clinrisk.data.validation import DataValidationError
from clinrisk.local.api_server import LocalLambdaContext
from clinrisk.model.archive import ModelArchiveError
from clinrisk.pipeline import contracts, stages
from clinrisk.registry.model_registry import ARTIFACT_PREFIX_TAG, CHECKSUM_TAG
from clinrisk.registry.serving_pointer import read_pointer
from clinrisk.tasks.readmission.synth import generate_cohort
from lambdas import common
from lambdas.common import BadEventError
from tests.sagemaker_training import train_from_directories

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

REGION = "us-east-1"
DATA_BUCKET = "clinrisk-data-test"
ARTIFACTS_BUCKET = "clinrisk-artifacts-test"
DEFAULT_DATA_URI = f"s3://{DATA_BUCKET}/cohorts/current.csv"
SENTINEL = "SENTINEL-9f3c"  # an input value that must never reach a log line or a message
Handler = Callable[[Any, Any], dict[str, Any]]


@dataclass(frozen=True)
class Cloud:
    home: Path
    s3: Any

    def keys(self, prefix: str, bucket: str = ARTIFACTS_BUCKET) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return sorted(item["Key"] for item in listed)


def _environment(home: Path) -> dict[str, str]:
    """The aws backend as the CDK app configures the stage Lambdas."""
    return {
        "CLINRISK_BACKEND": "aws",
        "CLINRISK_HOME": str(home),
        "CLINRISK_ARTIFACTS_BUCKET": ARTIFACTS_BUCKET,
        "CLINRISK_AWS_REGION": REGION,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        # Few test rows: the gate checks a sound model, not the UCI floors (tests/conftest.py).
        "CLINRISK_GATE__AUC_FLOOR": "0.5",
        "CLINRISK_GATE__MAX_SUBGROUP_AUC_GAP": "1.0",
        "CLINRISK_BOOTSTRAP_ROUNDS": "20",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "clinrisk",
    }


def _cohort_csv(rows: int, seed: int) -> bytes:
    return generate_cohort(rows, seed=seed).to_csv(index=False, na_rep="?").encode()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    home = tmp_path_factory.mktemp("cloud-home")
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (DATA_BUCKET, ARTIFACTS_BUCKET, "someone-elses-bucket"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=DATA_BUCKET, Key="cohorts/current.csv", Body=_cohort_csv(3000, 7))
        yield Cloud(home, s3)


@pytest.fixture
def env(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    for name, value in _environment(cloud.home).items():
        monkeypatch.setenv(name, value)
    # On AWS the tracking server stores run artifacts; this in-process stand-in keeps them in ./mlruns.
    monkeypatch.chdir(cloud.home)
    common.runtime.cache_clear()  # a cold start: settings and ports from this environment
    yield cloud
    common.runtime.cache_clear()


def _context() -> LocalLambdaContext:
    return LocalLambdaContext(aws_request_id="req-1", deadline_epoch=time.time() + 900, function_name="clinrisk-test")


def _handler(name: str) -> Handler:
    handler: Handler = importlib.import_module(f"lambdas.{name}.handler").handler
    return handler


def _validate_event(run_id: str, request: Any) -> dict[str, Any]:
    """The ValidateData state's Payload."""
    return {"run_id": run_id, "request": request, "default_data_uri": DEFAULT_DATA_URI}


# --------------------------------------------------------------------------- validate


def test_validate_splits_the_default_data_file_into_channels(env: Cloud) -> None:
    output = _handler("validate")(_validate_event("validate-ok", {"trigger": "schedule"}), _context())

    run = contracts.ValidatedRun.model_validate(output)
    assert (run.run_id, run.trigger, run.approval_requested) == ("validate-ok", "schedule", False)
    assert run.rows["input"] == 3000
    assert run.rows["train"] + run.rows["validation"] + run.rows["test"] == 3000
    for name, prefix in run.channels.items():
        assert prefix == f"runs/validate-ok/channels/{name}"
        assert env.keys(prefix + "/"), f"channel {name} is empty"
    assert set(output) == {"run_id", "trigger", "task", "approval_requested", "rows", "channels"}
    assert run.task == "readmission"  # an input naming no task


def test_validate_reads_the_file_the_input_names(env: Cloud) -> None:
    env.s3.put_object(Bucket=DATA_BUCKET, Key="cohorts/small.csv", Body=_cohort_csv(900, 3))
    request = {"trigger": "manual", "data_uri": f"s3://{DATA_BUCKET}/cohorts/small.csv", "approval_requested": True}

    run = contracts.ValidatedRun.model_validate(
        _handler("validate")(_validate_event("validate-named", request), _context())
    )

    assert run.rows["input"] == 900 and run.approval_requested is True


def test_validate_of_a_missing_file_raises_data_not_found_and_writes_nothing(env: Cloud) -> None:
    request = {"trigger": "manual", "data_uri": f"s3://{DATA_BUCKET}/cohorts/missing.csv"}

    with pytest.raises(stages.DataNotFoundError, match=r"no data file at s3://clinrisk-data-test/cohorts/missing\.csv"):
        _handler("validate")(_validate_event("validate-missing", request), _context())

    assert env.keys("runs/validate-missing/") == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"trigger": SENTINEL}, "request.trigger"),
        ({"trigger": "manual", "data_uri": f"s3://someone-elses-bucket/{SENTINEL}.csv"}, "request"),
        ({"trigger": "manual", "approval_required": SENTINEL}, "request.approval_required"),
        (SENTINEL, "request"),
    ],
)
def test_bad_execution_input_fails_fast_naming_the_field_not_the_value(
    env: Cloud, capsys: pytest.CaptureFixture[str], request_: Any, field: str
) -> None:
    with pytest.raises(BadEventError) as raised:
        _handler("validate")(_validate_event("validate-bad-input", request_), _context())

    assert field in raised.value.fields
    assert SENTINEL not in str(raised.value)
    assert SENTINEL not in capsys.readouterr().out
    assert env.keys("runs/validate-bad-input/") == []


def test_a_run_id_that_cannot_name_a_training_job_is_refused(env: Cloud) -> None:
    with pytest.raises(BadEventError, match="run_id"):
        _handler("validate")(_validate_event("has_underscore", {"trigger": "manual"}), _context())


def test_validate_refuses_a_bad_file_naming_rows_not_values(env: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    frame = generate_cohort(500, seed=4)
    frame.loc[7, "race"] = SENTINEL
    env.s3.put_object(Bucket=DATA_BUCKET, Key="cohorts/bad.csv", Body=frame.to_csv(index=False, na_rep="?").encode())
    request = {"trigger": "manual", "data_uri": f"s3://{DATA_BUCKET}/cohorts/bad.csv"}

    with pytest.raises(DataValidationError) as raised:
        _handler("validate")(_validate_event("validate-bad-file", request), _context())

    assert "race" in str(raised.value) and SENTINEL not in str(raised.value)
    assert SENTINEL not in capsys.readouterr().out
    assert env.keys("runs/validate-bad-file/") == []


# --------------------------------------------------------------------------- evaluate and promote


@dataclass(frozen=True)
class Trained:
    run_id: str
    test_prefix: str
    archive_uri: str
    archive: bytes

    def event(self, **changes: Any) -> dict[str, Any]:
        """The Evaluate state's Payload."""
        return {
            "run_id": self.run_id,
            "trigger": "schedule",
            "model_prefix": f"runs/{self.run_id}/model",
            "model_archive": self.archive_uri,
            "test_prefix": self.test_prefix,
            **changes,
        }


@pytest.fixture(scope="module")
def trained(cloud: Cloud) -> Trained:
    """Validate, then train on the channels as the SageMaker job would, once for the module."""
    run_id = "cloud-run-1"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _environment(cloud.home).items():
            patch.setenv(name, value)
        common.runtime.cache_clear()
        output = _handler("validate")(_validate_event(run_id, {"trigger": "schedule"}), _context())
        common.runtime.cache_clear()
    channels = contracts.ValidatedRun.model_validate(output).channels
    store = S3ObjectStore(ARTIFACTS_BUCKET, client=cloud.s3)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("train", "validation"):
            store.download_dir(channels[name], Path(tmp) / name)
        archive = train_from_directories({n: Path(tmp) / n for n in ("train", "validation")}, {"num_round": "150"})
    key = f"runs/{run_id}/training/clinrisk-{run_id}/output/model.tar.gz"
    cloud.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=archive)
    return Trained(run_id, channels["test"], f"s3://{ARTIFACTS_BUCKET}/{key}", archive)


def _archive_files(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as opened:
        return {m.name: opened.extractfile(m).read() for m in opened if m.isfile()}  # type: ignore[union-attr]


def _version_count() -> int:
    return len(common.runtime().ports.registry.versions())


def test_evaluate_unpacks_the_jobs_archive_registers_the_directory_and_promote_serves_it(
    env: Cloud, trained: Trained
) -> None:
    output = contracts.EvaluateOutput.model_validate(_handler("evaluate")(trained.event(), _context()))

    prefix = f"runs/{trained.run_id}/model"
    files = _archive_files(trained.archive)
    assert env.keys(prefix + "/") == sorted(f"{prefix}/{name}" for name in files)
    registry = common.runtime().ports.registry
    tags = registry.client.get_model_version(registry.model_name, str(output.model_version)).tags
    assert tags[ARTIFACT_PREFIX_TAG] == prefix
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(content)
        assert tags[CHECKSUM_TAG] == directory_checksum(Path(tmp))  # byte for byte what the job wrote
    assert output.gate_passed, output.gate_reasons
    assert output.metrics["test_roc_auc"] is not None and output.metrics["test_roc_auc"] > 0.55

    promoted = _handler("promote")(
        {"model_version": output.model_version, "expected_champion": output.champion_before}, _context()
    )

    assert promoted["outcome"] == "promoted"
    pointer = read_pointer(common.runtime().ports.store)
    assert pointer is not None and (pointer.version, pointer.artifact_prefix) == (output.model_version, prefix)


def _put_archive(cloud: Cloud, key: str, members: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    cloud.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{ARTIFACTS_BUCKET}/{key}"


def test_evaluate_refuses_a_malicious_archive_and_registers_nothing(env: Cloud, trained: Trained) -> None:
    files = _archive_files(trained.archive)
    # The real model's files, plus one that would overwrite the serving pointer.
    uri = _put_archive(env, "runs/evil-run/training/clinrisk-evil-run/output/model.tar.gz",
                       {**files, "../../../serving/pointer.json": b'{"version": 666}'})  # fmt: skip
    versions, pointer = _version_count(), env.keys("serving/")

    with pytest.raises(ModelArchiveError, match="outside the model directory"):
        _handler("evaluate")(trained.event(run_id="evil-run", model_prefix="runs/evil-run/model", model_archive=uri),
                             _context())  # fmt: skip

    assert env.keys("runs/evil-run/model/") == []
    assert _version_count() == versions
    assert env.keys("serving/") == pointer


def test_evaluate_refuses_an_archive_in_another_bucket(env: Cloud, trained: Trained) -> None:
    env.s3.put_object(Bucket="someone-elses-bucket", Key="m/model.tar.gz", Body=trained.archive)
    versions = _version_count()

    with pytest.raises(ModelArchiveError, match="not in the artifacts store"):
        _handler("evaluate")(
            trained.event(run_id="foreign", model_prefix="runs/foreign/model",
                          model_archive="s3://someone-elses-bucket/m/model.tar.gz"), _context())  # fmt: skip

    assert env.keys("runs/foreign/") == [] and _version_count() == versions


def test_evaluate_of_a_job_without_a_model_says_so(env: Cloud, trained: Trained) -> None:
    missing = f"s3://{ARTIFACTS_BUCKET}/runs/empty/training/clinrisk-empty/output/model.tar.gz"
    with pytest.raises(ModelArchiveError, match="wrote no model"):
        _handler("evaluate")(trained.event(run_id="empty", model_prefix="runs/empty/model", model_archive=missing),
                             _context())  # fmt: skip


def test_evaluate_bad_archive_uri_is_a_bad_event(env: Cloud, trained: Trained) -> None:
    with pytest.raises(BadEventError, match="model_archive"):
        _handler("evaluate")(trained.event(model_archive=f"s3://{ARTIFACTS_BUCKET}/../{SENTINEL}"), _context())


def test_the_handlers_results_are_json(env: Cloud, trained: Trained) -> None:
    # What Step Functions receives: the Lambda runtime serialises the return value as JSON.
    output = _handler("validate")(_validate_event("validate-json", {"trigger": "drift-alarm"}), _context())
    assert json.loads(json.dumps(output)) == output
