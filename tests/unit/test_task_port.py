"""The task port: readmission bound to its own code through its plugins, and the generic task made
from a task file alone (heart disease, or what `task init` drafts), each giving what the pipeline needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinrisk.data.generic_task import GenericTask, subgroup_levels
from clinrisk.data.readmission_task import ReadmissionTask
from clinrisk.data.splits import split_by_patient
from clinrisk.data.task_binding import resolve_task, task_for
from clinrisk.data.validation import DataValidationError
from clinrisk.settings import Settings
from clinrisk.tasks.readmission import model_card
from clinrisk.tasks.readmission.features import FEATURE_SCHEMA, build_features, trainable_mask
from clinrisk.tasks.readmission.schema import PATIENT_ID
from clinrisk.tasks.readmission.synth import generate_cohort
from clinrisk.taskspec.catalogue import TASKS_DIR, find_task
from clinrisk.taskspec.spec import Subgroup, TaskFileError, load_task
from tests.heart_synthetic import heart_frame, write_site_file


def test_readmission_resolves_to_its_own_code_with_the_same_card_and_features() -> None:
    task = resolve_task()
    assert isinstance(task, ReadmissionTask)
    assert task.feature_schema == FEATURE_SCHEMA
    spec = task.source.spec
    # The packaged task file says what model_card.py says (the card is written from the code).
    assert (spec.model_card.intended_use, spec.model_card.population) == (
        model_card.INTENDED_USE,
        model_card.POPULATION,
    )
    assert spec.model_card.limitations == [model_card.LIMITS]
    assert task.card.limitations == model_card.LIMITS
    settings = Settings()
    assert (task.model_name(settings), task.settings(settings)) == (settings.model_name, settings)
    assert set(task.factors()) == set(FEATURE_SCHEMA.names)


def test_readmission_examples_are_what_the_readmission_code_gives() -> None:
    cohort = generate_cohort(600, seed=3)
    task = resolve_task("readmission")
    examples = task.examples(cohort)
    keep = trainable_mask(cohort)
    expected = build_features(cohort)[keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(examples.features, expected)
    assert examples.excluded == int((~keep).sum())
    assert list(examples.subgroups) == ["race", "gender", "age_band"]
    np.testing.assert_array_equal(examples.groups, cohort[PATIENT_ID].to_numpy()[keep])
    splits = task.split(cohort, seed=7, test=0.2, validation=0.2)
    for name, frame in split_by_patient(cohort, seed=7, test=0.2, validation=0.2).items():
        pd.testing.assert_frame_equal(splits[name], frame)


def test_heart_disease_is_generic_and_its_synthetic_cohort_validates_splits_and_learns(tmp_path: Path) -> None:
    task = resolve_task("heart-disease")
    assert isinstance(task, GenericTask)
    files = task.synthesize(tmp_path, rows=400, seed=1)
    assert [f.name for f in files] == ["processed.cleveland.data"]  # the loader labels files by name
    frame = task.load(files)
    splits = task.split(frame, seed=1, test=0.2, validation=0.2)
    groups = [set(split["row_id"]) for split in splits.values()]
    assert sum(map(len, groups)) == len(frame) and not (groups[0] & groups[1] or groups[1] & groups[2])
    task.write_channel(splits["test"], tmp_path / "test" / "test.csv.gz")
    pd.testing.assert_frame_equal(task.read_channel([tmp_path / "test" / "test.csv.gz"]), splits["test"])
    examples = task.examples(frame)
    assert list(examples.features.columns) == task.feature_schema.names
    assert 0.2 < examples.labels.mean() < 0.8
    assert set(examples.subgroups) == {"sex", "age_band", "site"}
    # The planted signal is there: age alone separates the classes.
    ages = examples.features["age"].to_numpy()
    known = ~np.isnan(ages)
    assert ages[known][examples.labels[known] == 1].mean() > ages[known][examples.labels[known] == 0].mean()


def test_generic_factors_group_one_hot_codes_under_their_column() -> None:
    factors = resolve_task("heart-disease").factors()
    assert factors["cp=4"] == factors["cp=1"] == "cp"
    assert factors["chol"] == "chol"
    assert "num" not in factors.values() and "row_id" not in factors.values()


def test_the_task_file_sets_the_gate_and_threshold_and_keeps_the_bands_ordered() -> None:
    task = resolve_task("heart-disease")
    settings = task.settings(Settings())
    assert settings.operating_threshold == 0.5
    assert settings.gate.subgroup_min_size == 50
    assert settings.serving.medium_risk_from < settings.operating_threshold
    assert settings.gate.auc_floor == Settings().gate.auc_floor  # not overridden: the deployment's
    assert task.model_name(settings) == "clinrisk-heart-disease"


def test_binned_subgroups_name_their_bins_and_keep_missing_missing() -> None:
    levels = subgroup_levels(
        Subgroup(name="age_band", column="age", bins=[45, 55, 65]), pd.Series([30, 45, 60, 70, None])
    )
    assert list(levels) == ["<45", "45-55", "55-65", "≥65", None]


def test_a_site_file_with_a_bad_code_fails_loading_with_every_problem(tmp_path: Path) -> None:
    frame = heart_frame()
    frame.loc[4, "thal"] = 5.0
    frame.loc[9, "cp"] = 9.0
    path = write_site_file(tmp_path / "processed.hungarian.data", frame)
    with pytest.raises(DataValidationError) as caught:
        resolve_task("heart-disease").load([path])
    assert {problem.column for problem in caught.value.report.problems} == {"thal", "cp"}


def test_a_task_file_reusing_a_catalogued_name_is_refused_naming_the_key(tmp_path: Path) -> None:
    copy = tmp_path / "mine.yaml"
    copy.write_text(
        (TASKS_DIR / "heart-disease.yaml").read_text().replace("subgroup_min_size: 50", "subgroup_min_size: 40")
    )
    with pytest.raises(TaskFileError, match=r"name: task name 'heart-disease' is already used by .*heart-disease.yaml"):
        find_task(str(copy))
    same = tmp_path / "same.yaml"
    same.write_bytes((TASKS_DIR / "heart-disease.yaml").read_bytes())
    assert find_task(str(same)).spec.name == "heart-disease"  # the same file elsewhere is the same task


def test_plugins_bind_the_readmission_implementation() -> None:
    loaded = load_task(find_task("readmission").path)
    assert isinstance(task_for(loaded), ReadmissionTask)
    assert isinstance(task_for(find_task("heart-disease")), GenericTask)


def test_drafted_task_names_keep_the_site_so_site_files_do_not_share_a_registered_model() -> None:
    from clinrisk.local.task_draft import _task_name

    names = [_task_name(Path(f"processed.{site}.data")) for site in ("cleveland", "hungarian")]
    assert names == ["processed-cleveland", "processed-hungarian"]
    assert _task_name(Path("visits.csv.gz")) == "visits"
