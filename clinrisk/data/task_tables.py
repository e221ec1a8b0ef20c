"""Read a task's data files and check them against its task file.

`read_task_files` reads the files as text (with or without a header, as the task says), adds the
columns the task's source declares (row id, file label) and refuses a file that does not match the
task with one error. `validate_task_table` reports every problem at once, by row and column and
never with a cell value, and builds the typed frame:
- declared columns in declared order, then the added columns;
- numeric columns as float64, a missing marker or a declared missing value as NaN;
- categorical columns as object holding the normalised code (`3.0` -> "3"), missing as None;
- boolean columns as float64 0/1, missing as NaN;
- a cell with a problem is missing in the frame, so the frame stays usable for reporting.
Rows matching an exclusion are dropped before any check.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinrisk.data.validation import (
    Mask,
    Problem,
    ProblemCode,
    ValidationReport,
    _row_problem,
    _table_problem,
)
from clinrisk.errors import DataFileError
from clinrisk.taskspec.spec import (
    AnyColumn,
    BooleanColumn,
    CategoricalColumn,
    IdentifierColumn,
    NumericColumn,
    TaskSpec,
    normalise_code,
)

COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class TaskDataMismatchError(DataFileError):
    """A data file does not have the task's columns (wrong file, or wrong task)."""


@dataclass(frozen=True)
class TaskTable:
    """The typed frame, the labels (1/0, NaN where unknown or absent), the excluded rows and the report."""

    frame: pd.DataFrame
    labels: pd.Series
    excluded: int
    report: ValidationReport


def read_task_files(task: TaskSpec, paths: Sequence[Path | str]) -> pd.DataFrame:
    """The files as one text frame with the task's added columns; one error for a file that does not match."""
    return pd.concat([_read_one(task, Path(path)) for path in paths], ignore_index=True)


def _read_one(task: TaskSpec, path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        frame = pd.read_csv(
            path,
            sep=task.source.delimiter,
            header=0 if task.source.header else None,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFileError(f"{path}: cannot be read as a delimited text file ({type(error).__name__})") from None
    frame = _named(task, path, frame)
    return _with_added_columns(task, path, frame)


def _named(task: TaskSpec, path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    declared = task.column_names
    if not task.source.header:
        if frame.shape[1] != len(declared):
            raise TaskDataMismatchError(
                f"{path} does not match task {task.name!r}: it has {frame.shape[1]} fields per row,"
                f" the task declares {len(declared)} columns"
            )
        frame.columns = pd.Index(declared)
        return frame
    names = [str(name).strip() for name in frame.columns]
    missing = [name for name in declared if name not in names]
    unknown = [name for name in names if name not in declared and name not in task.source.ignore]
    if missing or unknown:
        parts = [
            f"missing columns {', '.join(missing)}" if missing else "",
            f"unknown columns {', '.join(unknown)}" if unknown else "",
        ]
        raise TaskDataMismatchError(
            f"{path} does not match task {task.name!r}: " + "; ".join(part for part in parts if part)
        )
    frame.columns = pd.Index(names)
    return frame[declared]


def _with_added_columns(task: TaskSpec, path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    label = task.source.file_label
    prefix = ""
    if label is not None:
        if path.name not in label.labels:
            raise TaskDataMismatchError(
                f"{path} does not match task {task.name!r}: source.file_label has no label for {path.name!r}"
            )
        frame[label.column] = label.labels[path.name]
        prefix = f"{label.labels[path.name]}-"
    if task.source.row_id is not None:
        frame[task.source.row_id] = [f"{prefix}{number}" for number in range(1, len(frame) + 1)]
    return frame


def validate_task_table(task: TaskSpec, raw: pd.DataFrame) -> TaskTable:
    """Check a text frame from `read_task_files` against the task; every problem at once."""
    kept = ~_excluded(task, raw)
    table = raw.loc[kept].reset_index(drop=True)
    missing = table.apply(lambda column: column.str.strip().isin(task.missing_markers))
    frame = pd.DataFrame(index=table.index)
    problems: list[Problem] = []
    for spec in task.columns:
        frame[spec.name], found = _check_column(spec, table[spec.name], missing[spec.name].to_numpy())
        problems += found
    for name in task.source.added_columns():
        frame[name] = table[name]
    labels = _labels(task, frame, table[task.target.column])
    problems += _target_problems(task, frame[task.target.column], labels)
    problems += _id_problems(task, frame)
    report = ValidationReport(rows=len(table), problems=problems)
    return TaskTable(frame=frame, labels=labels, excluded=int((~kept).sum()), report=report)


def validate_task_records(task: TaskSpec, raw: pd.DataFrame) -> TaskTable:
    """Check records to score (a text frame of the declared columns but the target), each record on
    its own: every row is kept and typed as `validate_task_table` types it, and a column that no
    record fills is no problem (one record may leave `chol` out), but a missing column is."""
    absent = [c.name for c in task.columns if c.name != task.target.column and c.name not in raw]
    problems = [_table_problem(ProblemCode.MISSING_COLUMN, name, f"no column {name!r}") for name in absent]
    table = raw.reset_index(drop=True)
    frame = pd.DataFrame(index=table.index)
    for spec in task.columns:
        if spec.name == task.target.column or spec.name in absent:
            continue
        missing = table[spec.name].str.strip().isin(task.missing_markers).to_numpy()
        frame[spec.name], found = _check_column(spec, table[spec.name], missing)
        problems += [problem for problem in found if problem.code != ProblemCode.ALL_MISSING]
    labels = pd.Series(np.nan, index=table.index)
    return TaskTable(
        frame=frame, labels=labels, excluded=0, report=ValidationReport(rows=len(table), problems=problems)
    )


def _excluded(task: TaskSpec, raw: pd.DataFrame) -> pd.Series:
    excluded = pd.Series(False, index=raw.index)
    for exclusion in task.exclusions:
        excluded |= raw[exclusion.column].map(normalise_code).isin(exclusion.values)
    return excluded


def _check_column(spec: AnyColumn, text: pd.Series, missing: Mask) -> tuple[pd.Series, list[Problem]]:
    if isinstance(spec, NumericColumn):
        return _numeric(spec, text, missing)
    if isinstance(spec, IdentifierColumn):
        return text.str.strip().where(~missing, None).astype(object), []
    codes = text.map(normalise_code)
    if isinstance(spec, CategoricalColumn):
        unknown = ~missing & ~codes.isin(list(spec.codes)).to_numpy()
        allowed = ", ".join(spec.codes)
        problems = _row_problem(ProblemCode.UNKNOWN_CODE, spec.name, unknown, f"a code outside {allowed}")
        return codes.where(~(missing | unknown), None).astype(object), problems
    lowered = codes.str.lower()
    truth = lowered.isin(spec.true_values).to_numpy()
    falsity = lowered.isin(spec.false_values).to_numpy()
    bad = ~missing & ~truth & ~falsity
    values = pd.Series(np.where(truth, 1.0, np.where(falsity, 0.0, np.nan)), index=text.index)
    return values, _row_problem(ProblemCode.NOT_BOOLEAN, spec.name, bad, "a value that is not true or false")


def _numeric(spec: NumericColumn, text: pd.Series, missing: Mask) -> tuple[pd.Series, list[Problem]]:
    numbers = pd.to_numeric(text.where(~missing), errors="coerce")
    not_number = ~missing & numbers.isna().to_numpy()
    declared_missing = numbers.isin(spec.missing_values).to_numpy()
    numbers = numbers.where(~declared_missing)
    present = numbers.notna().to_numpy()
    values = numbers.to_numpy(dtype=np.float64)
    outside = present & ~np.array([spec.range.contains(value) for value in np.nan_to_num(values)])
    problems = _row_problem(ProblemCode.NOT_A_NUMBER, spec.name, not_number, "a value that is not a number")
    if present.any() and outside[present].all():
        problems.append(
            _table_problem(
                ProblemCode.ALL_OUT_OF_RANGE,
                spec.name,
                f"column {spec.name!r}: every value ({int(present.sum())} rows) is outside its plausible range"
                f" {spec.range.text()} {spec.unit}: wrong unit, wrong column, or a code for 'not recorded'",
            )
        )
    else:
        problems += _row_problem(
            ProblemCode.OUT_OF_RANGE, spec.name, outside, f"outside {spec.range.text()} {spec.unit}"
        )
    if not present.any() and len(values):
        problems.append(_all_missing(spec.name, len(values), int(declared_missing.sum())))
    fractional = present & ~outside & (values != np.round(values)) if spec.integer else np.zeros(len(values), bool)
    problems += _row_problem(ProblemCode.NOT_INTEGER, spec.name, fractional, "a value that is not a whole number")
    return pd.Series(np.where(outside | fractional, np.nan, values), index=text.index), problems


def _all_missing(column: str, rows: int, declared: int) -> Problem:
    how = f", {declared} of them holding a value the task declares as missing" if declared else ""
    return _table_problem(
        ProblemCode.ALL_MISSING,
        column,
        f"column {column!r}: no row has a value ({rows} rows missing{how}): not recorded",
    )


def _labels(task: TaskSpec, frame: pd.DataFrame, text: pd.Series) -> pd.Series:
    """1/0 by the target's rule; NaN where the checked target is missing (absent or with a problem)."""
    values = frame[task.target.column]
    comparison = task.target.comparison()
    if comparison is not None:
        positive = COMPARISONS[comparison[0]](values, comparison[1])
    else:  # positive values are codes as written (`yes`), so compare the text, not the parsed 0/1
        fold = isinstance(task.column(task.target.column), BooleanColumn)
        wanted = {value.lower() if fold else value for value in task.target.positive or []}
        codes = text.map(normalise_code)
        positive = (codes.str.lower() if fold else codes).isin(wanted)
    return pd.Series(np.where(values.isna(), np.nan, np.asarray(positive, dtype=np.float64)), index=frame.index)


def _target_problems(task: TaskSpec, target: pd.Series, labels: pd.Series) -> list[Problem]:
    name = task.target.column
    problems = _row_problem(ProblemCode.MISSING_VALUE, name, target.isna().to_numpy(), "no outcome (target missing)")
    classes = labels.dropna().unique()
    if len(labels) and len(classes) < 2:
        problems.append(
            _table_problem(
                ProblemCode.SINGLE_CLASS_TARGET,
                name,
                f"column {name!r}: every row with an outcome has the same class; a risk model needs both classes",
            )
        )
    return problems


def _id_problems(task: TaskSpec, frame: pd.DataFrame) -> list[Problem]:
    ids = frame[task.record_id]
    problems = _row_problem(ProblemCode.MISSING_VALUE, task.record_id, ids.isna().to_numpy(), "no record id")
    repeated = ids.notna() & ids.duplicated(keep=False)
    return problems + _row_problem(
        ProblemCode.DUPLICATE_RECORD_ID, task.record_id, repeated.to_numpy(), "a record id used by another row"
    )


def load_task_table(task: TaskSpec, paths: Sequence[Path | str]) -> TaskTable:
    """Read and check the files; the caller decides what to do with the report."""
    return validate_task_table(task, read_task_files(task, paths))


@dataclass(frozen=True)
class TaskOutcomes:
    """An outcome file of a task: each row with a record id and an outcome, as text id and 0/1 label
    (the task's own positive rule), and the 1-based rows without one of the two (not known yet)."""

    rows: np.ndarray
    ids: list[str]
    labels: np.ndarray
    incomplete: np.ndarray


def read_task_outcomes(task: TaskSpec, path: Path, *, others: Sequence[TaskSpec] = ()) -> TaskOutcomes:
    """A CSV with a header holding the task's record id and target columns (others are ignored).
    Refused with one line naming the column: either column absent (naming the task among `others`
    whose outcome columns the file has), or a target value outside what the task declares."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataFileError(f"{path}: not a readable CSV file ({type(error).__name__})") from None
    raw.columns = pd.Index([str(name).strip() for name in raw.columns])
    wanted = (task.record_id, task.target.column)
    absent = [name for name in wanted if name not in raw.columns]
    if absent:
        owner = next(
            (o.name for o in others if o.name != task.name and {o.record_id, o.target.column} <= set(raw)), None
        )
        whose = f"; it is an outcome file of task {owner!r}" if owner else ""
        raise TaskDataMismatchError(
            f"{path} is not an outcome file of task {task.name!r}: no column {', '.join(absent)}{whose}"
        )
    target = task.column(task.target.column)
    if target is None:  # a task file's cross-field check makes the target a declared column
        raise DataFileError(f"task {task.name!r} declares no column {task.target.column!r}")
    text = raw[task.target.column]
    missing = text.str.strip().isin(task.missing_markers).to_numpy()
    values, problems = _check_column(target, text, missing)
    refused = [problem for problem in problems if problem.code != ProblemCode.ALL_MISSING]
    if refused:
        raise DataFileError(f"{path}: {refused[0].message}")
    labels = _labels(task, pd.DataFrame({task.target.column: values}), text)
    ids = raw[task.record_id].str.strip()
    known = labels.notna().to_numpy() & ~ids.isin(["", *task.missing_markers]).to_numpy()
    numbers = np.arange(1, len(raw) + 1)
    return TaskOutcomes(
        rows=numbers[known],
        ids=ids[known].tolist(),
        labels=labels[known].to_numpy(dtype=np.int8),
        incomplete=numbers[~known],
    )
