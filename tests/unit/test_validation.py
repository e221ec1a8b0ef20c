from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clinrisk.data.tables import write_table
from clinrisk.data.validation import (
    MAX_EXAMPLE_ROWS,
    DataValidationError,
    ProblemCode,
    ValidationReport,
    ensure_valid,
    load_encounters,
    validate_encounters,
)
from clinrisk.tasks.readmission.schema import COLUMN_NAMES, COLUMNS, TARGET, ColumnKind
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.unit.conftest import WriteCsv

P = ProblemCode
SECRET = "ZZSECRET42"
WHOLE_NUMBER_KINDS = {ColumnKind.IDENTIFIER, ColumnKind.INTEGER, ColumnKind.CODE}
Found = tuple[str | None, ProblemCode, int, list[int]]


@pytest.fixture
def text_rows(valid_rows: pd.DataFrame) -> pd.DataFrame:
    """The valid rows as `read_table` gives them from a CSV: every cell text, missing as None."""
    return valid_rows.astype("string").astype(object).where(valid_rows.notna(), None)


def found(frame: pd.DataFrame, *, require_target: bool = True) -> list[Found]:
    report = validate_encounters(frame, require_target=require_target).report
    return [(p.column, p.code, p.count, p.example_rows) for p in report.problems]


def report_of(frame: pd.DataFrame) -> ValidationReport:
    return validate_encounters(frame).report


# --- valid input and the canonical frame -------------------------------------------------


def test_canonical_frame_passes_unchanged(valid_rows: pd.DataFrame) -> None:
    result = validate_encounters(valid_rows)

    assert result.report.ok
    assert result.report.problems == []
    assert result.frame is not None
    pd.testing.assert_frame_equal(result.frame, valid_rows)


def test_text_is_parsed_into_the_canonical_frame(text_rows: pd.DataFrame, valid_rows: pd.DataFrame) -> None:
    frame = ensure_valid(text_rows)

    assert list(frame.columns) == list(COLUMN_NAMES)
    for spec in COLUMNS:
        expected = np.dtype("int64") if spec.kind in WHOLE_NUMBER_KINDS else np.dtype(object)
        assert frame[spec.name].dtype == expected, spec.name
    text_cells = frame.select_dtypes(object).to_numpy().ravel()
    assert all(isinstance(cell, str) or pd.isna(cell) for cell in text_cells)
    assert frame.loc[1, "race"] is None
    pd.testing.assert_frame_equal(frame, valid_rows)


def test_missing_not_measured_result_reads_as_none(text_rows: pd.DataFrame) -> None:
    text_rows.loc[0, ["max_glu_serum", "A1Cresult"]] = None

    frame = ensure_valid(text_rows)

    assert frame.loc[0, "max_glu_serum"] == "None"
    assert frame.loc[0, "A1Cresult"] == "None"


def test_whole_numbers_written_as_decimals_are_accepted(text_rows: pd.DataFrame) -> None:
    text_rows.loc[0, "num_medications"] = "3.0"
    text_rows.loc[1, "num_medications"] = "7"

    frame = ensure_valid(text_rows)

    assert frame["num_medications"].tolist()[:2] == [3, 7]


def test_free_text_accepts_any_value(text_rows: pd.DataFrame) -> None:
    text_rows.loc[0, "medical_specialty"] = "anything at all, even 3.5 or ?!"

    assert found(text_rows) == []


def test_target_is_optional_when_not_required(text_rows: pd.DataFrame) -> None:
    frame = ensure_valid(text_rows.drop(columns=TARGET), require_target=False)

    assert list(frame.columns) == [name for name in COLUMN_NAMES if name != TARGET]


def test_present_target_is_kept_but_may_be_one_class_when_not_required(text_rows: pd.DataFrame) -> None:
    text_rows[TARGET] = "NO"

    frame = ensure_valid(text_rows, require_target=False)

    assert list(frame.columns) == list(COLUMN_NAMES)


# --- each problem -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "bad", "code"),
    [
        ("num_medications", "3.5", P.NOT_INTEGER),
        ("num_medications", "many", P.NOT_INTEGER),
        ("number_inpatient", "inf", P.NOT_INTEGER),
        ("time_in_hospital", "15", P.OUT_OF_RANGE),
        ("num_procedures", "-1", P.OUT_OF_RANGE),
        ("patient_nbr", "0", P.OUT_OF_RANGE),
        ("admission_type_id", "99", P.UNKNOWN_CODE),
        ("discharge_disposition_id", "0", P.UNKNOWN_CODE),
        ("gender", None, P.MISSING_VALUE),
        ("num_lab_procedures", None, P.MISSING_VALUE),
        ("encounter_id", None, P.MISSING_VALUE),
        ("gender", "female", P.UNKNOWN_CATEGORY),
        ("insulin", "Stable", P.UNKNOWN_CATEGORY),
        ("race", "Martian", P.UNKNOWN_CATEGORY),
        ("diag_1", "250.123", P.BAD_ICD9_CODE),
        ("diag_2", "X12", P.BAD_ICD9_CODE),
        ("readmitted", "yes", P.BAD_TARGET),
        ("readmitted", None, P.MISSING_VALUE),
    ],
)
def test_bad_cells_are_reported_with_count_and_rows(
    text_rows: pd.DataFrame, column: str, bad: str | None, code: ProblemCode
) -> None:
    text_rows.loc[[1, 3], column] = bad

    assert found(text_rows) == [(column, code, 2, [2, 4])]
    assert validate_encounters(text_rows).frame is None


def test_non_whole_number_in_a_numeric_column_is_reported(valid_rows: pd.DataFrame) -> None:
    # Parquet keeps numeric types: a float column must still hold whole numbers.
    valid_rows["num_medications"] = valid_rows["num_medications"].astype("float64")
    valid_rows.loc[4, "num_medications"] = 3.5

    assert found(valid_rows) == [("num_medications", P.NOT_INTEGER, 1, [5])]


def test_example_rows_are_capped_and_count_all(text_rows: pd.DataFrame) -> None:
    frame = pd.concat([text_rows, text_rows], ignore_index=True)
    frame["encounter_id"] = [str(n) for n in range(1, len(frame) + 1)]
    frame["num_medications"] = "x"

    (problem,) = report_of(frame).problems

    assert (problem.count, problem.example_rows) == (12, [1, 2, 3, 4, 5])
    assert len(problem.example_rows) == MAX_EXAMPLE_ROWS
    assert "rows 1, 2, 3, 4, 5 and 7 more" in problem.message


def test_row_numbers_are_positions_not_index_labels(text_rows: pd.DataFrame) -> None:
    text_rows.index = pd.Index([50, 40, 30, 20, 10, 0])
    text_rows.loc[30, "gender"] = "x"  # third data row

    assert found(text_rows) == [("gender", P.UNKNOWN_CATEGORY, 1, [3])]


def test_duplicate_encounter_id(text_rows: pd.DataFrame) -> None:
    text_rows.loc[3, "encounter_id"] = "101"  # the id of row 1

    assert found(text_rows) == [("encounter_id", P.DUPLICATE_ENCOUNTER_ID, 1, [4])]


def test_missing_column(text_rows: pd.DataFrame) -> None:
    assert found(text_rows.drop(columns="age")) == [("age", P.MISSING_COLUMN, 1, [])]


def test_missing_target_when_required(text_rows: pd.DataFrame) -> None:
    assert found(text_rows.drop(columns=TARGET)) == [(TARGET, P.MISSING_COLUMN, 1, [])]


def test_unknown_column_is_a_problem(text_rows: pd.DataFrame) -> None:
    text_rows["notes"] = "x"

    assert found(text_rows) == [("notes", P.UNKNOWN_COLUMN, 1, [])]


def test_repeated_column_is_a_problem(text_rows: pd.DataFrame) -> None:
    frame = pd.concat([text_rows, text_rows[["age"]]], axis=1)

    assert found(frame) == [("age", P.DUPLICATE_COLUMN, 1, [])]


def test_file_without_header_is_one_problem(text_rows: pd.DataFrame) -> None:
    text_rows.columns = pd.Index([f"{SECRET}{n}" for n in range(len(text_rows.columns))])

    report = report_of(text_rows)

    assert [(p.column, p.code) for p in report.problems] == [(None, P.UNRECOGNISED_HEADER)]
    assert SECRET not in report.summary()


@pytest.mark.parametrize("only_class", ["NO", "<30", ">30"])
def test_single_class_target(text_rows: pd.DataFrame, only_class: str) -> None:
    text_rows[TARGET] = only_class

    assert found(text_rows) == [(TARGET, P.SINGLE_CLASS_TARGET, 1, [])]


def test_empty_table(text_rows: pd.DataFrame) -> None:
    result = validate_encounters(text_rows.iloc[:0])

    assert (result.report.rows, result.frame) == (0, None)
    assert found(text_rows.iloc[:0]) == [(None, P.EMPTY, 1, [])]


def test_every_problem_is_reported_at_once(text_rows: pd.DataFrame) -> None:
    frame = text_rows.drop(columns="age").assign(notes="x")
    frame.loc[0, "num_medications"] = "x"
    frame.loc[2, "diag_1"] = "bad"
    frame.loc[4, "encounter_id"] = "101"  # the id of row 1

    assert found(frame) == [
        ("age", P.MISSING_COLUMN, 1, []),
        ("notes", P.UNKNOWN_COLUMN, 1, []),
        ("num_medications", P.NOT_INTEGER, 1, [1]),
        ("diag_1", P.BAD_ICD9_CODE, 1, [3]),
        ("encounter_id", P.DUPLICATE_ENCOUNTER_ID, 1, [5]),
    ]


# --- the report and its messages -----------------------------------------------------------


def test_messages_never_hold_cell_values(text_rows: pd.DataFrame) -> None:
    # One distinctive bad value in a column of every checked kind.
    for column in ["encounter_id", "num_medications", "admission_type_id", "race", "diag_1", TARGET]:
        text_rows.loc[2, column] = SECRET
    text_rows.loc[4, "time_in_hospital"] = "4242424242"

    report = report_of(text_rows)
    with pytest.raises(DataValidationError) as raised:
        ensure_valid(text_rows)

    assert len(report.problems) == 7
    texts = [report.summary(), report.brief(), report.model_dump_json(), str(raised.value)]
    for text in texts:
        assert SECRET not in text
        assert "4242424242" not in text


def test_messages_name_the_column_count_rows_and_allowed_values(text_rows: pd.DataFrame) -> None:
    text_rows.loc[[1, 3], "num_medications"] = "x"
    text_rows.loc[0, "admission_type_id"] = "99"
    text_rows.loc[0, "change"] = "x"

    messages = [p.message for p in report_of(text_rows).problems]

    assert messages == [
        "column 'admission_type_id': an id outside the allowed set (1 to 8) in 1 row (row 1)",
        "column 'num_medications': a value that is not a whole number in 2 rows (rows 2, 4)",
        "column 'change': a value outside the allowed set (No, Ch) in 1 row (row 1)",
    ]


def test_summary_has_one_line_per_problem(text_rows: pd.DataFrame) -> None:
    text_rows.loc[0, "gender"] = "x"
    text_rows.loc[0, "age"] = "x"

    lines = report_of(text_rows).summary().splitlines()

    assert lines[0] == "6 rows, 2 problems:"
    assert [line[:12] for line in lines[1:]] == ["- column 'ge", "- column 'ag"]
    assert report_of(text_rows.iloc[:0]).summary() == "0 rows, 1 problem:\n- the table has no data rows"


def test_summary_of_a_valid_table(valid_rows: pd.DataFrame) -> None:
    assert report_of(valid_rows).summary() == "6 rows: no problems"


def test_report_is_json_serialisable(text_rows: pd.DataFrame) -> None:
    text_rows.loc[5, "gender"] = "x"

    dumped: dict[str, Any] = json.loads(json.dumps(report_of(text_rows).model_dump(mode="json")))

    assert dumped["rows"] == 6
    assert dumped["ok"] is False
    assert dumped["problems"][0]["code"] == "unknown_category"
    assert dumped["problems"][0]["example_rows"] == [6]
    assert ValidationReport.model_validate(dumped) == report_of(text_rows)


# --- ensure_valid and load_encounters --------------------------------------------------------


def test_ensure_valid_raises_with_the_report(text_rows: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError) as raised:
        ensure_valid(text_rows.drop(columns=["age", "gender"]))

    error = raised.value
    assert [p.code for p in error.report.problems] == [P.MISSING_COLUMN, P.MISSING_COLUMN]
    assert str(error) == ("data validation failed: 2 problems (missing_column: 'gender'; missing_column: 'age')")
    assert pickle.loads(pickle.dumps(error)).report == error.report


def test_brief_names_at_most_five_problems(text_rows: pd.DataFrame) -> None:
    report = report_of(text_rows.drop(columns=list(COLUMN_NAMES[2:9])))

    assert report.brief().endswith("; and 2 more)")
    assert report.brief().startswith("7 problems (missing_column: 'race';")


def test_load_encounters_reads_and_validates(valid_rows: pd.DataFrame, write_csv: WriteCsv) -> None:
    pd.testing.assert_frame_equal(load_encounters(write_csv(valid_rows)), valid_rows)


def test_load_encounters_rejects_a_bad_file(valid_rows: pd.DataFrame, write_csv: WriteCsv) -> None:
    path = write_csv(valid_rows.drop(columns=TARGET))

    with pytest.raises(DataValidationError):
        load_encounters(path)
    assert list(load_encounters(path, require_target=False).columns) == list(COLUMN_NAMES[:-1])


def test_schema_has_no_nullable_whole_number_column() -> None:
    # The canonical frame stores whole numbers as int64, which cannot hold a missing value.
    assert not [spec.name for spec in COLUMNS if spec.kind in WHOLE_NUMBER_KINDS and spec.nullable]


# --- integer parsing without pyarrow ------------------------------------------------------


def test_large_ids_stay_exact(text_rows: pd.DataFrame) -> None:
    # Above 2**53 float64 rounds neighbouring ids together; they must stay distinct and exact.
    ids = [2**62 + 1, 2**62 + 3, 2**62 + 5, 2**62 + 7, 2**62 + 9, 2**62 + 11]
    text_rows["encounter_id"] = [str(i) for i in ids]

    frame = ensure_valid(text_rows)

    assert frame["encounter_id"].tolist() == ids


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("+7", None),
        ("007", None),
        ("1_000", P.NOT_INTEGER),  # Python's int() would take it; a CSV cell may not
        ("١٢", P.NOT_INTEGER),  # non-ASCII digits
        ("True", P.NOT_INTEGER),
        ("99999999999999999999", P.NOT_INTEGER),  # beyond int64
    ],
)
def test_integer_literals_are_read_strictly(text_rows: pd.DataFrame, cell: str, code: ProblemCode | None) -> None:
    text_rows.loc[2, "num_medications"] = cell

    problems = found(text_rows)

    assert problems == ([] if code is None else [("num_medications", code, 1, [3])])


def test_python_ints_in_a_text_column_are_numbers(text_rows: pd.DataFrame, valid_rows: pd.DataFrame) -> None:
    text_rows["num_medications"] = valid_rows["num_medications"].astype(object)

    frame = ensure_valid(text_rows)

    assert frame["num_medications"].tolist() == valid_rows["num_medications"].tolist()


_DIGEST_SCRIPT = """
import hashlib, sys
if sys.argv[2] == "block":
    sys.modules["pyarrow"] = None  # as in the Lambda bundles: importing it fails
from clinrisk.data.validation import load_encounters
frame = load_encounters(sys.argv[1])
digest = hashlib.sha256()
for name in frame.columns:
    digest.update(f"{name}:{frame[name].dtype}:".encode())
    digest.update(repr(frame[name].tolist()).encode())
print(digest.hexdigest(), "pyarrow" in sys.modules and sys.modules["pyarrow"] is not None)
"""


def test_the_canonical_frame_is_the_same_without_pyarrow(tmp_path: Path) -> None:
    """pandas keeps text in pyarrow when it can and in Python objects when it cannot (the Lambda):
    validation must build the same canonical frame, value for value and dtype for dtype."""
    path = tmp_path / "cohort.csv.gz"
    write_table(generate_cohort(400, seed=5), path)

    def digest(mode: str) -> list[str]:
        command = [sys.executable, "-c", _DIGEST_SCRIPT, str(path), mode]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    with_arrow, without_arrow = digest("allow"), digest("block")

    assert with_arrow[1] == "True" and without_arrow[1] == "False"  # each ran as intended
    assert with_arrow[0] == without_arrow[0]
