"""A synthetic cohort for any task file: every declared column drawn inside its declaration, and an
outcome with a planted signal, so tests and `clinrisk pipeline run --task T` work without real data.

- numeric: uniform over the plausible range (whole numbers if `integer`), never a declared
  "missing" value; 3% of cells hold the file's first missing marker;
- categorical: a declared code, never one an exclusion drops; boolean: its first true or false word;
- ids: the row number; a group id other than the record id puts about two rows in each group;
- outcome: logistic in the first four feature columns (each scaled to -1..1, weight 1.5 over their
  root count), so a model can learn it; values come from the target's own rule (positive codes,
  or values on each side of `positive_if`).
The file is written as the task reads it: its delimiter, with or without a header, and named by
the first file label when the task labels its files (the loader refuses other names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinrisk.data.task_tables import COMPARISONS
from clinrisk.taskspec.spec import (
    AnyColumn,
    BooleanColumn,
    CategoricalColumn,
    IdentifierColumn,
    NumericColumn,
    TaskFileError,
    TaskSpec,
    normalise_code,
)

MISSING_SHARE = 0.03
SIGNAL_COLUMNS = 4
SIGNAL_WEIGHT = 1.5


def _bounds(column: NumericColumn) -> tuple[float, float]:
    low, high = column.range.min, column.range.max
    if low is None and high is None:
        return 0.0, 100.0
    if low is None:
        return float(high) - 100.0, float(high)  # type: ignore[arg-type]
    if high is None:
        return float(low), float(low) + 100.0
    return float(low), float(high)


def _numbers(column: NumericColumn, rng: np.random.Generator, rows: int) -> np.ndarray:
    low, high = _bounds(column)
    values = rng.uniform(low, high, rows)
    values = np.round(values) if column.integer else np.round(values, 2)
    values = np.clip(values, low, high)
    declared_missing = np.isin(values, column.missing_values)
    return np.where(declared_missing, high, values)


def _excluded_codes(spec: TaskSpec, name: str) -> set[str]:
    return {value for exclusion in spec.exclusions if exclusion.column == name for value in exclusion.values}


def _feature_cells(
    spec: TaskSpec, column: AnyColumn, rng: np.random.Generator, rows: int
) -> tuple[list[str], np.ndarray]:
    """The column's cells as text, and its signal scaled to -1..1 (0 where it carries none)."""
    if isinstance(column, NumericColumn):
        values = _numbers(column, rng, rows)
        low, high = _bounds(column)
        signal = (values - low) / (high - low) * 2 - 1 if high > low else np.zeros(rows)
        return [_number_text(v) for v in values], signal
    if isinstance(column, CategoricalColumn):
        codes = [code for code in column.codes if code not in _excluded_codes(spec, column.name)]
        index = rng.integers(0, len(codes), rows)
        signal = index / (len(codes) - 1) * 2 - 1 if len(codes) > 1 else np.zeros(rows)
        return [codes[i] for i in index], signal
    if isinstance(column, BooleanColumn):
        truth = rng.random(rows) < 0.5
        return [column.true_values[0] if t else column.false_values[0] for t in truth], truth * 2.0 - 1
    return [str(i) for i in range(1, rows + 1)], np.zeros(rows)


def _number_text(value: float) -> str:
    return normalise_code(value)


def _target_values(spec: TaskSpec) -> tuple[list[str], list[str]]:
    """(positive values, negative values) the target column may hold, as text."""
    column = spec.column(spec.target.column)
    comparison = spec.target.comparison()
    if comparison is not None and isinstance(column, NumericColumn):
        low, high = _bounds(column)
        grid = np.unique(np.round(np.linspace(low, high, 21)) if column.integer else np.linspace(low, high, 21))
        grid = grid[~np.isin(grid, column.missing_values)]
        compare = COMPARISONS[comparison[0]]
        positive = [_number_text(v) for v in grid if compare(v, comparison[1])]
        negative = [_number_text(v) for v in grid if not compare(v, comparison[1])]
    else:
        positive = list(spec.target.positive or [])
        if isinstance(column, CategoricalColumn):
            pool = list(column.codes)
        elif isinstance(column, BooleanColumn):
            truth = positive[0].lower() in column.true_values
            return (
                ([column.true_values[0]], [column.false_values[0]])
                if truth
                else (
                    [column.false_values[0]],
                    [column.true_values[0]],
                )
            )
        else:
            pool = ["0", "1", "2"]
        negative = [value for value in pool if value not in positive and value.lower() not in positive]
    if not positive or not negative:
        # The declarations leave one outcome without a value: a problem of the task file.
        raise TaskFileError(spec.name, [f"target: column {spec.target.column!r} leaves no value for one outcome"])
    return positive, negative


def synthetic_rows(spec: TaskSpec, *, rows: int, seed: int) -> pd.DataFrame:
    """`rows` synthetic records of the task's declared columns, as text cells, in declared order."""
    rng = np.random.default_rng(seed)
    roles = {spec.record_id, spec.group_id, spec.target.column}
    cells: dict[str, list[str]] = {}
    signals: list[np.ndarray] = []
    for column in spec.columns:
        if column.name in roles:
            continue
        cells[column.name], signal = _feature_cells(spec, column, rng, rows)
        if column.feature and not isinstance(column, IdentifierColumn) and len(signals) < SIGNAL_COLUMNS:
            signals.append(signal)
    marker = spec.missing_markers[0] if spec.missing_markers else None
    if marker is not None:
        for column in spec.feature_columns:
            if isinstance(column, NumericColumn) and column.name in cells:
                cells[column.name] = [marker if rng.random() < MISSING_SHARE else v for v in cells[column.name]]
    risk = SIGNAL_WEIGHT * sum(signals, np.zeros(rows)) / np.sqrt(max(len(signals), 1))
    outcome = rng.random(rows) < 1 / (1 + np.exp(-risk))
    positive, negative = _target_values(spec)
    cells[spec.target.column] = [
        str(rng.choice(positive)) if is_positive else str(rng.choice(negative)) for is_positive in outcome
    ]
    declared = set(spec.column_names)
    if spec.record_id in declared:
        cells[spec.record_id] = [str(i) for i in range(1, rows + 1)]
    if spec.group_id in declared and spec.group_id != spec.record_id:
        cells[spec.group_id] = [f"g{i}" for i in rng.integers(1, max(rows // 2, 1) + 1, rows)]
    return pd.DataFrame(cells)[spec.column_names]


def write_task_file(spec: TaskSpec, frame: pd.DataFrame, directory: Path) -> Path:
    """Write `frame` as the task's data files are written, and return the path."""
    label = spec.source.file_label
    name = next(iter(label.labels)) if label is not None else f"synthetic-{spec.name}.csv"
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, header=spec.source.header, sep=spec.source.delimiter)
    return path
