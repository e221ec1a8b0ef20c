"""Check a table of encounters against `clinrisk.tasks.readmission.schema` and build the canonical typed frame.

Every problem is reported at once, as a `Problem` with a stable code, a count, up to five
example rows and a message a person can act on. Reports never hold a cell value (cells are
patient data); they name columns, counts, row numbers and the values the schema allows.

Row numbers are 1-based positions of data rows: row n is the n-th data row of the frame,
which is line n + 1 of a CSV file (line 1 is the header). They ignore the frame's index.

The canonical frame, which the rest of clinrisk relies on:
- columns in schema order (`COLUMN_NAMES`, without the target when it is absent);
- IDENTIFIER, INTEGER and CODE columns as int64;
- CATEGORY, ICD9 and TEXT columns as object dtype holding Python `str`, missing as None;
- in `NOT_MEASURED_COLUMNS` a missing cell becomes "None" (not measured);
- the index of the input frame.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, computed_field

from clinrisk.compat import StrEnum
from clinrisk.data.tables import read_table
from clinrisk.errors import ReportedError
from clinrisk.tasks.readmission.schema import (
    COLUMN_NAMES,
    COLUMNS,
    ENCOUNTER_ID,
    ICD9_PATTERN,
    MISSING_TOKEN,
    NOT_MEASURED_COLUMNS,
    POSITIVE_LABEL,
    TARGET,
    ColumnKind,
    ColumnSpec,
)

MAX_EXAMPLE_ROWS = 5
_BRIEF_PROBLEMS = 5  # problems named in the one-line brief
# In NOT_MEASURED_COLUMNS this value means "test not done"; a missing cell is read as it.
NOT_MEASURED = "None"
_WHOLE_NUMBER_KINDS = frozenset({ColumnKind.IDENTIFIER, ColumnKind.INTEGER, ColumnKind.CODE})
# Whole numbers must fit int64, the canonical dtype.
_INT64_LIMIT = 2.0**63

Mask = npt.NDArray[np.bool_]


class ProblemCode(StrEnum):
    EMPTY = "empty"
    UNRECOGNISED_HEADER = "unrecognised_header"
    MISSING_COLUMN = "missing_column"
    UNKNOWN_COLUMN = "unknown_column"
    DUPLICATE_COLUMN = "duplicate_column"
    MISSING_VALUE = "missing_value"
    NOT_INTEGER = "not_integer"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_CATEGORY = "unknown_category"
    BAD_ICD9_CODE = "bad_icd9_code"
    BAD_TARGET = "bad_target"
    DUPLICATE_ENCOUNTER_ID = "duplicate_encounter_id"
    SINGLE_CLASS_TARGET = "single_class_target"
    # Task files (clinrisk.data.task_tables)
    NOT_A_NUMBER = "not_a_number"
    NOT_BOOLEAN = "not_boolean"
    ALL_OUT_OF_RANGE = "all_out_of_range"
    ALL_MISSING = "all_missing"
    DUPLICATE_RECORD_ID = "duplicate_record_id"


class Problem(BaseModel):
    """One kind of problem in one column (or in the table as a whole)."""

    model_config = ConfigDict(frozen=True)

    column: str | None = Field(description="The column, or None for a problem of the whole table.")
    code: ProblemCode
    count: int = Field(ge=0, description="Rows with the problem; 1 for a problem of a column or of the whole table.")
    example_rows: list[int] = Field(
        default_factory=list,
        max_length=MAX_EXAMPLE_ROWS,
        description="The first rows with the problem: 1-based data rows (CSV line number minus 1).",
    )
    message: str


class ValidationReport(BaseModel):
    """The outcome of validating one table: its size and every problem found."""

    rows: int = Field(ge=0)
    problems: list[Problem] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Human-readable text: a headline, then one line per problem."""
        if self.ok:
            return f"{_count(self.rows, 'row')}: no problems"
        headline = f"{_count(self.rows, 'row')}, {_count(len(self.problems), 'problem')}:"
        return "\n".join([headline, *(f"- {problem.message}" for problem in self.problems)])

    def brief(self) -> str:
        """One line naming the first few problems by code and column."""
        shown = [_brief_item(problem) for problem in self.problems[:_BRIEF_PROBLEMS]]
        hidden = len(self.problems) - len(shown)
        more = f"; and {hidden} more" if hidden else ""
        return f"{_count(len(self.problems), 'problem')} ({'; '.join(shown)}{more})"


class DataValidationError(ReportedError[ValidationReport]):
    """A table of encounters breaks the schema; `report` lists every problem."""

    @staticmethod
    def message(report: ValidationReport) -> str:
        return f"data validation failed: {report.brief()}"


@dataclass(frozen=True)
class ValidatedEncounters:
    """The canonical frame (None unless the report is ok) and the report."""

    frame: pd.DataFrame | None
    report: ValidationReport


def validate_encounters(frame: pd.DataFrame, *, require_target: bool = True) -> ValidatedEncounters:
    """Check `frame` against the schema; build the canonical frame if there is no problem.

    With `require_target`, the target column must be present and hold both 30-day classes.
    Without it, the target may be absent; when present its values are still checked.
    """
    specs = _expected_specs(frame, require_target)
    problems = _empty_table(frame) + _column_set_problems(frame, specs)
    parsed: dict[str, pd.Series] = {}
    for spec in _checkable_specs(frame, specs):
        parsed[spec.name], found = _check_column(spec, frame[spec.name])
        problems += found
    problems += _duplicate_ids(parsed.get(ENCOUNTER_ID))
    if require_target and not _has_problem(problems, TARGET):
        problems += _single_class_target(parsed.get(TARGET))
    report = ValidationReport(rows=len(frame), problems=problems)
    canonical = _canonical_frame(frame.index, specs, parsed) if report.ok else None
    return ValidatedEncounters(frame=canonical, report=report)


def ensure_valid(frame: pd.DataFrame, *, require_target: bool = True) -> pd.DataFrame:
    """The canonical frame, or `DataValidationError` carrying the full report."""
    result = validate_encounters(frame, require_target=require_target)
    if result.frame is None:
        raise DataValidationError(result.report)
    return result.frame


def load_encounters(path: Path | str, *, require_target: bool = True) -> pd.DataFrame:
    """Read a CSV or Parquet file and return its canonical frame; the pipeline's strict path."""
    return ensure_valid(read_table(path), require_target=require_target)


# --- which columns ---------------------------------------------------------------------


def _expected_specs(frame: pd.DataFrame, require_target: bool) -> list[ColumnSpec]:
    keep_target = require_target or TARGET in frame.columns
    return [spec for spec in COLUMNS if spec.name != TARGET or keep_target]


def _checkable_specs(frame: pd.DataFrame, specs: Iterable[ColumnSpec]) -> list[ColumnSpec]:
    """Expected columns present exactly once (duplicates are reported, not checked)."""
    counts = Counter(frame.columns)
    return [spec for spec in specs if counts[spec.name] == 1]


def _empty_table(frame: pd.DataFrame) -> list[Problem]:
    if len(frame):
        return []
    return [_table_problem(ProblemCode.EMPTY, None, "the table has no data rows")]


def _column_set_problems(frame: pd.DataFrame, specs: Sequence[ColumnSpec]) -> list[Problem]:
    names = [str(name) for name in frame.columns]
    if not set(names) & set(COLUMN_NAMES):
        # Most likely the header line is missing, so the "names" are a row of patient data:
        # one problem, without echoing them.
        expected = ", ".join(COLUMN_NAMES[:3])
        message = (
            f"none of the expected column names ({expected}, ...) is present: "
            "the file lacks its header line or is in another layout"
        )
        return [_table_problem(ProblemCode.UNRECOGNISED_HEADER, None, message)]
    problems = [
        _table_problem(ProblemCode.MISSING_COLUMN, spec.name, f"column {spec.name!r} is missing")
        for spec in specs
        if spec.name not in names
    ]
    for name in dict.fromkeys(names):  # first-seen order, once each
        problems += _extra_or_repeated_column(name, names.count(name))
    return problems


def _extra_or_repeated_column(name: str, times: int) -> list[Problem]:
    if name not in COLUMN_NAMES:
        message = f"column {name!r} is not in the UCI layout; remove or rename it"
        return [_table_problem(ProblemCode.UNKNOWN_COLUMN, name, message)]
    if times > 1:
        message = f"column {name!r} appears {times} times; keep one"
        return [_table_problem(ProblemCode.DUPLICATE_COLUMN, name, message)]
    return []


# --- one column ------------------------------------------------------------------------


def _check_column(spec: ColumnSpec, column: pd.Series) -> tuple[pd.Series, list[Problem]]:
    """Parsed values (numbers, or text) and the problems of one column."""
    if spec.kind in _WHOLE_NUMBER_KINDS:
        present = column.notna().to_numpy(dtype=bool)
        numbers = _to_numbers(column)
        return numbers, _missing_values(spec, present) + _whole_number_problems(spec, numbers, present)
    text = column.astype("string")  # keeps missing as <NA>; numbers from Parquet become text
    if spec.name in NOT_MEASURED_COLUMNS:
        text = text.fillna(NOT_MEASURED)
    present = text.notna().to_numpy(dtype=bool)
    return text, _missing_values(spec, present) + _text_problems(spec, text, present)


def _missing_values(spec: ColumnSpec, present: Mask) -> list[Problem]:
    if spec.nullable:
        return []
    what = f"no value (empty or {MISSING_TOKEN!r}) where one is required"
    return _row_problem(ProblemCode.MISSING_VALUE, spec.name, ~present, what)


def _to_numbers(column: pd.Series) -> pd.Series:
    """The column as numbers, NaN where a cell is missing or is not a number.

    Integer dtype when every cell parses as an integer, so that large ids stay exact.
    """
    if pd.api.types.is_bool_dtype(column):
        return pd.Series(np.nan, index=column.index)  # True/False is not a count or an id
    if pd.api.types.is_numeric_dtype(column):
        return column
    exact = _plain_integers(column)
    return exact if exact is not None else pd.to_numeric(column, errors="coerce")


def _plain_integers(column: pd.Series) -> pd.Series | None:
    """The column as exact integers if every present cell is an integer literal (ASCII digits
    after an optional sign, as text or as a Python int) that fits int64, else None.

    The common case of a clean file. `pd.to_numeric` would give the same numbers but as float64
    whenever a cell is missing, which rounds ids above 2**53; here they stay exact.
    """
    present = column.notna().to_numpy(dtype=bool)
    cells = column.to_numpy(dtype=object)[present]
    if not all(_is_integer_literal(cell) for cell in cells):
        return None
    try:
        integers = np.fromiter((int(cell) for cell in cells), dtype=np.int64, count=cells.size)
    except OverflowError:
        return None
    if present.all():
        return pd.Series(integers, index=column.index)
    numbers = np.full(present.size, np.nan)  # float64 with NaN where a cell is missing
    numbers[present] = integers
    return pd.Series(numbers, index=column.index)


_INTEGER_LITERAL = re.compile(r"[+-]?[0-9]+")


def _is_integer_literal(cell: object) -> bool:
    # bool is an int subclass, but True/False is not a count or an id.
    if isinstance(cell, str):
        return _INTEGER_LITERAL.fullmatch(cell) is not None
    return isinstance(cell, int | np.integer) and not isinstance(cell, bool | np.bool_)


def _whole(numbers: pd.Series) -> Mask:
    """Cells holding a whole number that fits int64 (3 and 3.0 are whole; 3.5 is not)."""
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < _INT64_LIMIT)


def _whole_number_problems(spec: ColumnSpec, numbers: pd.Series, present: Mask) -> list[Problem]:
    whole = _whole(numbers)
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    # `present` comes from the cells before parsing: text that did not parse is NaN now.
    what = "a value that is not a whole number"
    problems = _row_problem(ProblemCode.NOT_INTEGER, spec.name, present & ~whole, what)
    return problems + _range_problems(spec, values, whole) + _code_problems(spec, values, whole)


def _range_problems(spec: ColumnSpec, values: npt.NDArray[np.float64], whole: Mask) -> list[Problem]:
    low = -np.inf if spec.minimum is None else spec.minimum
    high = np.inf if spec.maximum is None else spec.maximum
    outside = whole & ((values < low) | (values > high))
    return _row_problem(ProblemCode.OUT_OF_RANGE, spec.name, outside, f"a number {_range_text(spec)}")


def _code_problems(spec: ColumnSpec, values: npt.NDArray[np.float64], whole: Mask) -> list[Problem]:
    if spec.kind is not ColumnKind.CODE or spec.values is None:
        return []
    unknown = whole & ~np.isin(values, np.asarray(spec.values, dtype="float64"))
    what = f"an id outside the allowed set ({_values_text(spec.values)})"
    return _row_problem(ProblemCode.UNKNOWN_CODE, spec.name, unknown, what)


def _text_problems(spec: ColumnSpec, text: pd.Series, present: Mask) -> list[Problem]:
    if spec.kind is ColumnKind.ICD9:
        matches = text.str.fullmatch(ICD9_PATTERN).to_numpy(dtype=bool, na_value=False)
        what = "a value that is not an ICD-9 code (such as 250.83, V27 or E885)"
        return _row_problem(ProblemCode.BAD_ICD9_CODE, spec.name, present & ~matches, what)
    if spec.kind is ColumnKind.CATEGORY and spec.values is not None:
        allowed = text.isin(spec.values).to_numpy(dtype=bool, na_value=False)
        code = ProblemCode.BAD_TARGET if spec.name == TARGET else ProblemCode.UNKNOWN_CATEGORY
        what = f"a value outside the allowed set ({_values_text(spec.values)})"
        return _row_problem(code, spec.name, present & ~allowed, what)
    return []  # TEXT: any value is accepted


# --- across columns --------------------------------------------------------------------


def _duplicate_ids(ids: pd.Series | None) -> list[Problem]:
    if ids is None:
        return []
    repeated = ids.duplicated(keep="first").to_numpy(dtype=bool) & _whole(ids)
    what = "an id already used by an earlier row; each encounter must appear once"
    return _row_problem(ProblemCode.DUPLICATE_ENCOUNTER_ID, ENCOUNTER_ID, repeated, what)


def _single_class_target(target: pd.Series | None) -> list[Problem]:
    if target is None or target.empty:
        return []
    positives = int((target == POSITIVE_LABEL).sum())
    if 0 < positives < len(target):
        return []
    which = "no row" if positives == 0 else "every row"
    message = (
        f"column {TARGET!r}: {which} has the outcome {POSITIVE_LABEL!r}; "
        "a 30-day readmission model needs rows of both classes"
    )
    return [_table_problem(ProblemCode.SINGLE_CLASS_TARGET, TARGET, message)]


def _has_problem(problems: Iterable[Problem], column: str) -> bool:
    return any(problem.column == column for problem in problems)


# --- the canonical frame ---------------------------------------------------------------


def _canonical_frame(index: pd.Index, specs: Iterable[ColumnSpec], parsed: dict[str, pd.Series]) -> pd.DataFrame:
    columns = {spec.name: _canonical_column(spec, parsed[spec.name], index) for spec in specs}
    return pd.DataFrame(columns, index=index)


def _canonical_column(spec: ColumnSpec, values: pd.Series, index: pd.Index) -> pd.Series:
    if spec.kind in _WHOLE_NUMBER_KINDS:
        return pd.Series(values.to_numpy(dtype=np.int64), index=index, dtype=np.int64)
    # Python str with None for missing; dtype=object stops pandas inferring its string dtype.
    strings = values.to_numpy(dtype=object, copy=True)
    strings[values.isna().to_numpy(dtype=bool)] = None
    return pd.Series(strings, index=index, dtype=object)


# --- problems and their messages ---------------------------------------------------------


def _row_problem(code: ProblemCode, column: str, mask: Mask, what: str) -> list[Problem]:
    """A problem for the rows where `mask` is true, or none if there are none."""
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        return []
    findings = _row_findings.get()
    if findings is not None:
        findings.append(RowFinding(column=column, code=code, what=what, rows=mask))
    count = int(positions.size)
    examples = [int(position) + 1 for position in positions[:MAX_EXAMPLE_ROWS]]
    message = f"column {column!r}: {what} in {_count(count, 'row')} ({_rows_text(examples, count)})"
    return [Problem(column=column, code=code, count=count, example_rows=examples, message=message)]


def _table_problem(code: ProblemCode, column: str | None, message: str) -> Problem:
    return Problem(column=column, code=code, count=1, example_rows=[], message=message)


def _rows_text(examples: list[int], count: int) -> str:
    listed = ", ".join(str(row) for row in examples)
    more = f" and {count - len(examples)} more" if count > len(examples) else ""
    return f"{'row' if count == 1 else 'rows'} {listed}{more}"


def _range_text(spec: ColumnSpec) -> str:
    if spec.maximum is None:
        return f"below the minimum {spec.minimum}"
    if spec.minimum is None:
        return f"above the maximum {spec.maximum}"
    return f"outside the range {spec.minimum} to {spec.maximum}"


def _values_text(values: tuple[str, ...] | tuple[int, ...]) -> str:
    """The allowed values; a run of consecutive ids as 'lo to hi'."""
    if all(isinstance(value, int) for value in values):
        numbers = sorted(int(value) for value in values)
        if numbers == list(range(numbers[0], numbers[-1] + 1)):
            return f"{numbers[0]} to {numbers[-1]}"
    return ", ".join(str(value) for value in values)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _brief_item(problem: Problem) -> str:
    return problem.code.value if problem.column is None else f"{problem.code.value}: {problem.column!r}"


# --- row by row (batch scoring) ---------------------------------------------------------


@dataclass(frozen=True)
class RowFinding:
    """Every row of a frame with one row-level problem (a `Problem` names only the first few)."""

    column: str
    code: ProblemCode
    what: str
    rows: Mask  # per row of the frame: True where the row has the problem

    def problem(self) -> Problem:
        """The `Problem` that `validate_encounters` reports for these rows."""
        return _row_problem(self.code, self.column, self.rows, self.what)[0]


_row_findings: ContextVar[list[RowFinding] | None] = ContextVar("clinrisk_row_findings", default=None)


def validate_rows(frame: pd.DataFrame, *, require_target: bool = False) -> tuple[ValidatedEncounters, list[RowFinding]]:
    """`validate_encounters`, plus every row of each row-level problem, so that a caller can
    keep the valid rows (those no finding holds) and report the others: batch scoring."""
    findings: list[RowFinding] = []
    token = _row_findings.set(findings)
    try:
        result = validate_encounters(frame, require_target=require_target)
    finally:
        _row_findings.reset(token)
    return result, findings
