"""Task files: the shipped heart-disease file loads; bad files list every problem with its path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from clinrisk.model.training import Hyperparameters
from clinrisk.settings import GateRules
from clinrisk.taskspec.catalogue import TASKS_DIR, discover_tasks, find_task, survey_tasks
from clinrisk.taskspec.spec import (
    CategoricalColumn,
    GateOverrides,
    NumericColumn,
    TaskFileError,
    TrainingOverrides,
    load_task,
    parse_task,
)
from tests.heart_synthetic import COLUMNS

HEART = TASKS_DIR / "heart-disease.yaml"


def minimal() -> dict[str, Any]:
    return {
        "name": "tiny",
        "description": "a tiny task",
        "record_id": "id",
        "group_id": "id",
        "target": {"column": "y", "positive": [1]},
        "columns": [
            {"name": "id", "type": "identifier"},
            {"name": "y", "type": "boolean"},
            {"name": "age", "type": "numeric", "unit": "years", "range": {"min": 0, "max": 120}},
            {"name": "sex", "type": "categorical", "codes": {"F": "female", "M": "male"}},
        ],
        "model_card": {"intended_use": "tests", "population": "none"},
    }


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(TaskFileError) as caught:
        parse_task(yaml.safe_dump(document), source="t.yaml")
    return caught.value.problems


def test_the_shipped_heart_disease_task_loads_with_what_its_readme_says() -> None:
    task = load_task(HEART)
    spec = task.spec
    assert spec.name == "heart-disease"
    assert spec.column_names == COLUMNS
    assert spec.target.comparison() == (">", 0.0)
    assert spec.source.header is False
    assert "?" in spec.missing_markers
    chol = spec.column("chol")
    assert isinstance(chol, NumericColumn) and chol.missing_values == [0] and chol.unit == "mg/dl"
    cp = spec.column("cp")
    assert isinstance(cp, CategoricalColumn) and list(cp.codes) == ["1", "2", "3", "4"]
    assert [s.column for s in spec.subgroups] == ["sex", "age", "site"]
    assert spec.record_id == spec.group_id == spec.source.row_id
    assert spec.plugins == []
    assert re.fullmatch(r"[0-9a-f]{64}", task.sha256)


def test_a_minimal_task_loads_and_keeps_ids_and_target_out_of_the_features() -> None:
    spec = parse_task(yaml.safe_dump(minimal()))
    assert [column.name for column in spec.feature_columns] == ["age", "sex"]
    assert spec.target.positive == ["1"]


def test_every_field_problem_is_reported_at_once_with_its_path() -> None:
    document = minimal()
    document["name"] = "Bad Name"
    del document["columns"][2]["unit"]
    document["columns"][3]["codes"] = {}
    document["target"] = {"column": "y"}
    document["operating_threshold"] = 1.5
    document["colour"] = "blue"
    problems = problems_of(document)
    joined = "\n".join(problems)
    assert len(problems) == 6, joined
    assert any(p.startswith("name: ") for p in problems)
    assert any(p.startswith("columns[2] (age).unit: ") for p in problems)
    assert any(p.startswith("columns[3] (sex).codes: ") for p in problems)
    assert any(p.startswith("target: ") and "exactly one of positive" in p for p in problems)
    assert any(p.startswith("operating_threshold: ") for p in problems)
    assert any(p.startswith("colour: ") for p in problems)


def test_cross_field_problems_are_all_reported_naming_the_key() -> None:
    document = minimal()
    document["record_id"] = "encounter"
    document["target"] = {"column": "outcome", "positive": [1]}
    document["columns"].append({"name": "age", "type": "boolean"})
    document["subgroups"] = [{"name": "ward", "column": "ward"}, {"name": "sexes", "column": "sex", "bins": [1, 2]}]
    document["plugins"] = ["made.up"]
    document["exclusions"] = [{"column": "consent", "values": [0], "reason": "no consent"}]
    problems = problems_of(document)
    assert sorted(problems) == sorted(
        [
            "columns: 'age' is declared 2 times",
            "record_id: column 'encounter' is not declared",
            "target.column: column 'outcome' is not declared",
            "subgroups[0] (ward).column: column 'ward' is not declared",
            "exclusions[0].column: column 'consent' is not declared",
            "plugins[0]: unknown plugin 'made.up' (known: readmission.icd9_groups, readmission.prior_encounters)",
            "subgroups[1] (sexes).bins: column 'sex' is categorical, and this needs a numeric column",
        ]
    )


def test_factor_terms_must_name_feature_columns_of_a_plain_task() -> None:
    document = minimal()
    document["factor_terms"] = {"age": "older patients", "id": "the record", "ward": "the ward"}
    assert sorted(problems_of(document)) == [
        "factor_terms: 'id' is not a feature column",
        "factor_terms: 'ward' is not a feature column",
    ]
    document["factor_terms"] = {"age": "older patients"}
    assert parse_task(yaml.safe_dump(document)).factor_terms == {"age": "older patients"}


def test_a_target_threshold_needs_a_numeric_column_and_positive_values_need_declared_codes() -> None:
    document = minimal()
    document["target"] = {"column": "sex", "positive": ["X"]}
    assert problems_of(document) == ["target.positive: 'X' is not a code of column 'sex'"]
    document["target"] = {"column": "sex", "positive_if": "> 0"}
    assert problems_of(document) == ["target.positive_if: column 'sex' is categorical, and this needs a numeric column"]
    document["target"] = {"column": "age", "positive_if": "above 3"}
    assert problems_of(document)[0].startswith("target.positive_if: ")


def test_not_yaml_and_not_a_mapping_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match=r"line 1: not valid YAML"):
        parse_task("name: [unclosed", source="t.yaml")
    with pytest.raises(TaskFileError, match="must hold a mapping"):
        parse_task("- a\n- b\n")
    with pytest.raises(TaskFileError, match="cannot read the file"):
        load_task(tmp_path / "absent.yaml")


def _write(directory: Path, filename: str, document: dict[str, Any]) -> None:
    (directory / filename).write_text(yaml.safe_dump(document))


def test_two_task_files_with_the_same_name_are_refused_naming_both(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", minimal())
    _write(tmp_path, "b.yaml", minimal())
    with pytest.raises(TaskFileError) as caught:
        discover_tasks(tmp_path)
    assert caught.value.problems == [
        "a.yaml: name: task name 'tiny' is also declared by b.yaml",
        "b.yaml: name: task name 'tiny' is also declared by a.yaml",
    ]


def test_the_survey_judges_each_file_on_its_own_so_one_bad_file_leaves_the_others(tmp_path: Path) -> None:
    _write(tmp_path, "tiny.yaml", minimal())
    (tmp_path / "sepsis.yaml").write_text("name: septic\ncolumns: [unclosed\n")  # not YAML: named by its stem
    _write(tmp_path, "heart.yaml", {**minimal(), "name": "heart", "target": {"column": "nope", "positive": [1]}})
    _write(tmp_path, "twin-a.yaml", {**minimal(), "name": "twin"})
    _write(tmp_path, "twin-b.yaml", {**minimal(), "name": "twin"})
    _write(tmp_path, "copy.yaml", {**minimal(), "name": "readmission"})  # cannot take the packaged task's name
    survey = survey_tasks(tmp_path)
    assert sorted(survey.tasks) == ["readmission", "tiny"]
    assert survey.tasks["readmission"].path.name == "task.yaml"
    broken = {(b.name, b.path.name): b.keys for b in survey.broken}
    assert broken == {
        ("sepsis", "sepsis.yaml"): ["line 3"],
        ("heart", "heart.yaml"): ["target.column"],
        ("twin", "twin-a.yaml"): ["name"],
        ("twin", "twin-b.yaml"): ["name"],
        ("readmission", "copy.yaml"): ["name"],
    }
    with pytest.raises(TaskFileError) as caught:
        discover_tasks(tmp_path)  # the strict reading (CLI, synth) still refuses the whole directory
    assert caught.value.problems == survey.problems() and len(caught.value.problems) == 5


def test_the_catalogue_finds_tasks_by_name_and_reports_bad_files_by_file(tmp_path: Path) -> None:
    _write(tmp_path, "tiny.yaml", minimal())
    assert find_task("tiny", tmp_path).spec.name == "tiny"
    with pytest.raises(TaskFileError, match="no task named 'huge'"):
        find_task("huge", tmp_path)
    broken = minimal()
    broken["plugins"] = ["nope"]
    _write(tmp_path, "broken.yaml", broken)
    with pytest.raises(TaskFileError) as caught:
        discover_tasks(tmp_path)
    assert caught.value.problems[0].startswith("broken.yaml: plugins[0]: unknown plugin 'nope'")


def test_the_repository_task_directory_loads() -> None:
    assert "heart-disease" in discover_tasks()


def test_task_overrides_name_only_fields_the_trainer_and_the_gate_have() -> None:
    assert set(TrainingOverrides.model_fields) <= set(Hyperparameters.model_fields)
    assert set(GateOverrides.model_fields) <= set(GateRules.model_fields)
    heart = load_task(HEART).spec
    hp = Hyperparameters.for_task(heart.training)
    assert (hp.max_depth, hp.num_round) == (heart.training.max_depth, heart.training.num_round)
    assert hp.early_stopping_rounds == Hyperparameters().early_stopping_rounds  # not overridden: the default
