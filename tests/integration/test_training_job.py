"""sagemaker_jobs/train.py under the SageMaker script-mode contract, as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinrisk.adapters.local import DirectoryObjectStore, SubprocessTrainer
from clinrisk.data.splits import split_by_patient
from clinrisk.data.tables import write_table
from clinrisk.data.task_binding import resolve_task
from clinrisk.model import risk_model
from clinrisk.model.risk_model import RiskModel
from clinrisk.pipeline.contracts import RunInput
from clinrisk.pipeline.stages import validate_data
from clinrisk.ports import TrainingFailedError, TrainingJob
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.features import FEATURE_SCHEMA
from tests.conftest import cohort

pytestmark = pytest.mark.integration


def _job(store: DirectoryObjectStore, splits: dict[str, pd.DataFrame], **hyperparameters: object) -> TrainingJob:
    for name in ("train", "validation"):
        write_table(splits[name], store.path(f"channels/{name}/{name}.parquet"))
    return TrainingJob(
        name="test-job",
        channels={"train": "channels/train", "validation": "channels/validation"},
        model_prefix="model",
        output_prefix="output",
        hyperparameters=hyperparameters,
    )


@pytest.fixture
def store(tmp_path: Path) -> DirectoryObjectStore:
    return DirectoryObjectStore(tmp_path / "store")


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    return split_by_patient(cohort(3000, 21), seed=1, test=0.2, validation=0.25)


def test_training_job_writes_every_artifact(store: DirectoryObjectStore, splits: dict[str, pd.DataFrame]) -> None:
    SubprocessTrainer(store).train(_job(store, splits, num_round=300, max_depth=3))
    model_dir = store.path("model")
    files = (
        risk_model.BOOSTER_FILE,
        risk_model.CALIBRATOR_FILE,
        risk_model.FEATURE_SCHEMA_FILE,
        risk_model.BASELINE_FILE,
        risk_model.LOGISTIC_FILE,
        risk_model.SUMMARY_FILE,
    )
    for name in files:
        assert (model_dir / name).is_file(), name
    summary = json.loads((model_dir / risk_model.SUMMARY_FILE).read_text())
    # Hyperparameters arrived as --name value arguments.
    assert summary["hyperparameters"]["max_depth"] == 3
    assert summary["hyperparameters"]["num_round"] == 300
    assert summary["best_iteration"] < 300
    assert summary["excluded_death_or_hospice"] > 0
    assert summary["calibration"]["chosen"] in {"none", "platt", "isotonic"}
    assert json.loads((store.path("output") / "metrics.json").read_text())["validation"]["roc_auc"] > 0.6
    baseline = json.loads((model_dir / risk_model.BASELINE_FILE).read_text())
    assert set(baseline["features"]) == set(FEATURE_SCHEMA.names)

    model = RiskModel.load(model_dir)
    scores = model.predict(splits["test"])
    assert scores.shape == (len(splits["test"]),)
    assert np.all((scores >= 0) & (scores <= 1))


def test_channels_sharing_a_patient_fail_the_job(store: DirectoryObjectStore, splits: dict[str, pd.DataFrame]) -> None:
    leaked = {**splits, "validation": pd.concat([splits["validation"], splits["train"].head(5)])}
    with pytest.raises(TrainingFailedError, match="patients appear in both"):
        SubprocessTrainer(store).train(_job(store, leaked))
    assert not store.path(f"model/{risk_model.BOOSTER_FILE}").exists()


def test_a_channel_without_both_outcomes_fails_the_job(
    store: DirectoryObjectStore, splits: dict[str, pd.DataFrame]
) -> None:
    train = splits["train"]
    no_positives = {**splits, "train": train[train["readmitted"] != "<30"]}
    # Validation in the job is strict too, so the single-class train channel is refused by name.
    with pytest.raises(TrainingFailedError, match=r"single_class_target|both outcomes"):
        SubprocessTrainer(store).train(_job(store, no_positives))


def test_a_model_trained_on_other_features_is_refused(
    store: DirectoryObjectStore, splits: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    SubprocessTrainer(store).train(_job(store, splits, num_round=20))
    schema_file = store.path(f"model/{risk_model.FEATURE_SCHEMA_FILE}")
    schema = json.loads(schema_file.read_text())
    schema["features"] = schema["features"][:-1]
    schema_file.write_text(json.dumps(schema))
    from clinrisk.model.risk_model import ModelArtifactError

    with pytest.raises(ModelArtifactError, match="feature schema"):
        RiskModel.load(store.path("model"))


def test_a_task_channel_trains_that_task_with_its_training_overrides(tmp_path: Path) -> None:
    """The run's task file in the `task` channel, as the validate stage writes it for the cloud's
    training job, whose arguments name no task hyperparameter: the model is the task's, trained with
    the task file's overrides (heart-disease: shallow, regularised trees), as the local pipeline's."""
    task = resolve_task("heart-disease")
    store = DirectoryObjectStore(tmp_path / "store")
    data = task.synthesize(tmp_path / "records", rows=1500, seed=3)[0]
    validated = validate_data(RunInput(run_id="job", task=task.name), data, store=store, settings=Settings(), task=task)
    job = TrainingJob(
        name="test-job",
        channels={name: validated.channels[name] for name in ("train", "validation", "task")},
        model_prefix="model",
        output_prefix="output",
        hyperparameters={"num_round": 60},  # what the job's arguments name
    )

    SubprocessTrainer(store).train(job)

    summary = json.loads(store.path(f"model/{risk_model.SUMMARY_FILE}").read_text())["hyperparameters"]
    assert (summary["max_depth"], summary["min_child_weight"], summary["num_round"]) == (2, 3.0, 60)
    saved = json.loads(store.path(f"model/{risk_model.FEATURE_SCHEMA_FILE}").read_text())["features"]
    assert [f["name"] for f in saved] == task.feature_schema.names
