"""Data checked against a task file: every problem at once, by row and column, never a value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clinrisk.data.task_tables import TaskDataMismatchError, load_task_table, read_task_files
from clinrisk.data.validation import ProblemCode
from clinrisk.taskspec.catalogue import TASKS_DIR
from clinrisk.taskspec.features import feature_matrix, feature_names
from clinrisk.taskspec.spec import TaskSpec, load_task
from tests.heart_synthetic import heart_frame, write_site_file

SECRET = 987654.0  # a cell value that must never appear in a report


@pytest.fixture(scope="module")
def heart() -> TaskSpec:
    return load_task(TASKS_DIR / "heart-disease.yaml").spec


def _site(tmp_path: Path, name: str = "processed.cleveland.data", **changes: Any) -> Path:
    frame = heart_frame()
    for key, value in changes.items():
        column, row = key.rsplit("__", 1)
        frame.loc[int(row), column] = value
    return write_site_file(tmp_path / name, frame)


def test_a_clean_synthetic_site_file_has_no_problems_and_gets_its_added_columns(
    heart: TaskSpec, tmp_path: Path
) -> None:
    table = load_task_table(heart, [_site(tmp_path)])
    assert table.report.ok, table.report.summary()
    assert table.frame["row_id"].iloc[0] == "cleveland-1"
    assert set(table.frame["site"]) == {"cleveland"}
    expected = (heart_frame()["num"].astype(float) > 0).astype(float)
    assert table.labels.tolist() == expected.tolist()


def test_every_problem_is_listed_by_row_and_column_without_values(heart: TaskSpec, tmp_path: Path) -> None:
    path = _site(tmp_path, trestbps__4=SECRET, cp__2=9, cp__7=9, fbs__1=5, age__3="old", num__9="?", ca__0=1.5)
    report = load_task_table(heart, [path]).report
    found = {(p.code, p.column): p for p in report.problems}
    assert set(found) == {
        (ProblemCode.OUT_OF_RANGE, "trestbps"),
        (ProblemCode.UNKNOWN_CODE, "cp"),
        (ProblemCode.NOT_BOOLEAN, "fbs"),
        (ProblemCode.NOT_A_NUMBER, "age"),
        (ProblemCode.MISSING_VALUE, "num"),
        (ProblemCode.NOT_INTEGER, "ca"),
    }
    assert found[(ProblemCode.UNKNOWN_CODE, "cp")].example_rows == [3, 8]
    assert "outside 1, 2, 3, 4" in found[(ProblemCode.UNKNOWN_CODE, "cp")].message
    assert "987654" not in report.summary()


def test_a_column_that_is_never_recorded_gets_one_problem_that_says_so(heart: TaskSpec, tmp_path: Path) -> None:
    frame = heart_frame()
    frame["chol"] = 0.0  # as in Switzerland: 0 (declared missing) in every row
    report = load_task_table(heart, [write_site_file(tmp_path / "processed.switzerland.data", frame)]).report
    assert [(p.code, p.column) for p in report.problems] == [(ProblemCode.ALL_MISSING, "chol")]
    assert "no row has a value" in report.problems[0].message


def test_every_value_outside_the_plausible_range_is_one_problem_not_one_per_row(
    heart: TaskSpec, tmp_path: Path
) -> None:
    frame = heart_frame()
    frame["chol"] = frame["chol"].astype(float) / 38.67  # mmol/l, not mg/dl: all below 80
    report = load_task_table(heart, [write_site_file(tmp_path / "processed.va.data", frame)]).report
    assert [(p.code, p.column) for p in report.problems] == [(ProblemCode.ALL_OUT_OF_RANGE, "chol")]
    assert "every value (120 rows) is outside its plausible range 80 to 700 mg/dl" in report.problems[0].message


def test_a_target_with_one_class_is_a_problem(heart: TaskSpec, tmp_path: Path) -> None:
    frame = heart_frame()
    frame["num"] = 2.0
    report = load_task_table(heart, [write_site_file(tmp_path / "processed.va.data", frame)]).report
    assert [p.code for p in report.problems] == [ProblemCode.SINGLE_CLASS_TARGET]


@pytest.mark.parametrize("fields", [13, 15])
def test_a_file_with_other_fields_does_not_match_its_task(heart: TaskSpec, tmp_path: Path, fields: int) -> None:
    frame = heart_frame()
    frame = frame.iloc[:, :fields] if fields < 14 else frame.assign(extra=1)
    path = write_site_file(tmp_path / "processed.cleveland.data", frame)
    with pytest.raises(TaskDataMismatchError, match=f"does not match task 'heart-disease': it has {fields} fields"):
        read_task_files(heart, [path])


def test_a_file_the_task_has_no_label_for_does_not_match(heart: TaskSpec, tmp_path: Path) -> None:
    path = write_site_file(tmp_path / "other.csv", heart_frame())
    with pytest.raises(TaskDataMismatchError, match=r"no label for 'other\.csv'"):
        read_task_files(heart, [path])


def test_pooled_sites_keep_distinct_record_ids(heart: TaskSpec, tmp_path: Path) -> None:
    paths = [_site(tmp_path), _site(tmp_path, "processed.va.data")]
    table = load_task_table(heart, paths)
    assert table.report.ok
    assert table.frame["row_id"].is_unique and set(table.frame["site"]) == {"cleveland", "va"}


def test_exclusions_drop_rows_before_any_check(heart: TaskSpec, tmp_path: Path) -> None:
    task = heart.model_copy(update={"exclusions": [_exclusion()]})
    path = _site(tmp_path, restecg__5=9)  # not a restecg code, but the row is excluded (sex 1 rows)
    frame = heart_frame()
    excluded = int((frame["sex"] == 1).sum())
    table = load_task_table(task, [path])
    assert table.excluded == excluded and len(table.frame) == 120 - excluded


def _exclusion() -> object:
    from clinrisk.taskspec.spec import Exclusion

    return Exclusion(column="sex", values=["1"], reason="test")


def test_the_feature_matrix_comes_from_the_declared_columns(heart: TaskSpec, tmp_path: Path) -> None:
    table = load_task_table(heart, [_site(tmp_path, thal__0="?", chol__1=0)])
    matrix = feature_matrix(heart, table.frame)
    assert list(matrix.columns) == feature_names(heart)
    assert "num" not in matrix.columns and "row_id" not in matrix.columns and "site" not in matrix.columns
    assert [name for name in matrix.columns if name.startswith("cp=")] == ["cp=1", "cp=2", "cp=3", "cp=4"]
    one_hot = matrix[[f"cp={code}" for code in "1234"]].to_numpy()
    assert (one_hot.sum(axis=1) == 1).all()  # every synthetic row has a declared code
    assert matrix.loc[0, [f"thal={c}" for c in "367"]].sum() == 0  # missing code: all zeros
    assert matrix["chol"].isna().iloc[1]  # declared missing value -> NaN
    assert set(np.unique(matrix["fbs"])) <= {0.0, 1.0}
    assert matrix.dtypes.map(str).eq("float64").all()
