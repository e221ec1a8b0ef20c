"""Monitoring for a task other than readmission (issue 14 part 6), on the heart-disease task and
synthetic data: the training job writes its reference from the task file, serving captures its
inputs, and the monitor finds a planted shift in one heart column, and nothing without one."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from clinrisk.data.task_binding import resolve_task
from clinrisk.monitoring.fields import OTHER
from clinrisk.monitoring.reference import REFERENCE_FILE, MonitoringReference
from clinrisk.taskspec.spec import BooleanColumn, CategoricalColumn
from tests.sagemaker_training import train_from_directories

pytestmark = pytest.mark.integration
HEART = "heart-disease"


def _unpacked(packed: bytes, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as archive:
        archive.extractall(into, filter="data")
    return into


@pytest.fixture(scope="module")
def heart_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A heart-disease model trained by the training job on synthetic site rows, with the task channel."""
    root = tmp_path_factory.mktemp("heart")
    task = resolve_task(HEART)
    frame = task.load(task.synthesize(root / "data", rows=1500, seed=5))
    splits = task.split(frame, seed=1, test=0.1, validation=0.4)
    channels: dict[str, Path] = {}
    for name in ("train", "validation"):
        task.write_channel(splits[name], root / name / f"{name}.csv.gz")
        channels[name] = root / name
    (root / "task").mkdir()
    shutil.copy(task.source.path, root / "task" / "heart-disease.yaml")
    channels["task"] = root / "task"
    return _unpacked(train_from_directories(channels, {"num_round": "60"}), root / "model")


def test_the_training_job_writes_a_heart_disease_reference_from_its_task_file(heart_model: Path) -> None:
    assert (heart_model / REFERENCE_FILE).is_file()
    reference = MonitoringReference.load(heart_model)
    spec = resolve_task(HEART).source.spec
    assert list(reference.fields) == [column.name for column in spec.feature_columns]
    assert reference.captured_in == "inputs"
    for column in spec.feature_columns:
        bins = reference.fields[column.name]
        if isinstance(column, CategoricalColumn):  # one bin per declared code, then other and missing
            assert bins.kind == "categorical" and bins.categories == [*column.codes, OTHER]
        elif isinstance(column, BooleanColumn):
            assert bins.kind == "categorical" and bins.categories == ["0", "1", OTHER]
        else:
            assert bins.kind == "numeric"
    assert len(reference.fields["chol"].edges) >= 5  # quantile cut points of a spread-out measurement
    assert abs(sum(reference.fields["cp"].proportions) - 1) < 1e-9
    assert [s.name for s in reference.subgroups or []] == [s.name for s in spec.subgroups]
    assert set(reference.subgroup_high_rates["age_band"]) <= {"<45", "45-55", "55-65", "≥65", "missing"}
    assert set(reference.subgroup_high_rates["sex"]) == {"0", "1"}
    assert reference.rows > 400 and len(reference.scores) == reference.rows
