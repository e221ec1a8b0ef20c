"""The row rules of batch scoring, shared by `clinrisk score` (`clinrisk.batch.local`) and the cloud's
Plan state (`clinrisk.batch.split`), so both score the same rows and report the same problems:

- a file is read as `clinrisk.data.tables.read_table` reads a CSV: every column as text, `?` and empty
  cells missing (`NA_VALUES`); the `readmitted` column, if present, is ignored;
- missing, unknown or repeated columns make the whole file unusable (`check_columns`);
- a row that breaks the schema (`clinrisk.data.validation`) is left out and reported by row number
  (1-based data rows of the whole file) and reason, never by value;
- a patient's earlier encounters are counted over the whole file, not the chunk: the two id
  columns are read in full first (`Identities`), and each chunk's rows carry their counts.

pandas and numpy only: the "pipeline" Lambda bundle, which runs Plan, has no pyarrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from clinrisk.data.validation import (
    DataValidationError,
    Mask,
    Problem,
    ProblemCode,
    RowFinding,
    ValidationReport,
    ensure_valid,
    validate_encounters,
    validate_rows,
)
from clinrisk.tasks.readmission.features import prior_encounter_counts
from clinrisk.tasks.readmission.schema import COLUMN_NAMES, ENCOUNTER_ID, MISSING_TOKEN, PATIENT_ID

ID_COLUMNS = [ENCOUNTER_ID, PATIENT_ID]
# As `clinrisk.data.tables.read_table`: every column as text, `?` and empty cells missing, nothing else.
NA_VALUES = [MISSING_TOKEN, ""]
_CODE_ORDER = {code: i for i, code in enumerate(ProblemCode)}


def check_columns(columns: list[str]) -> None:
    """Missing, unknown or repeated columns make the whole file unusable."""
    problems = validate_encounters(pd.DataFrame(columns=columns), require_target=False).report.problems
    problems = [problem for problem in problems if problem.code is not ProblemCode.EMPTY]
    if problems:
        raise DataValidationError(ValidationReport(rows=0, problems=problems))


@dataclass(frozen=True)
class CheckedChunk:
    """The valid rows of `size` consecutive file rows starting at 0-based position `offset`."""

    offset: int
    size: int
    rows: list[int]  # 1-based file row numbers of the valid rows
    records: list[dict[str, Any]]  # as `Encounter.to_record()` gives them
    priors: list[int]  # each valid row's count of the patient's earlier encounters in the file


@dataclass(frozen=True)
class Identities:
    """The id columns of the whole file: which rows have bad ids, and each row's earlier encounters."""

    rows: int
    findings: list[RowFinding]
    invalid: Mask
    prior: npt.NDArray[np.int64]

    @classmethod
    def of(cls, ids: pd.DataFrame) -> Identities:
        _, findings = validate_rows(ids)  # missing, not whole, below 1, or an encounter id used before
        invalid = _any_rows(findings, len(ids))
        valid = ids[~invalid].apply(pd.to_numeric).astype(np.int64)
        prior = np.zeros(len(ids), dtype=np.int64)
        # A row with valid ids counts as an earlier encounter even if another of its cells is bad.
        prior[~invalid] = prior_encounter_counts(valid).to_numpy(dtype=np.int64)
        return cls(rows=len(ids), findings=findings, invalid=invalid, prior=prior)


class RowChecker:
    """Checks a file's rows chunk by chunk, gathering row-level problems with row numbers of the
    whole file."""

    def __init__(self, ids: Identities) -> None:
        self._ids = ids
        self._invalid = ids.invalid.copy()
        self._positions: dict[tuple[str, ProblemCode, str], list[npt.NDArray[np.intp]]] = {}
        for finding in ids.findings:
            self._add(finding, 0)

    def check(self, chunk: pd.DataFrame, offset: int) -> CheckedChunk:
        """The chunk's valid rows; the other rows are recorded as invalid. `chunk` is indexed from 0."""
        result, findings = validate_rows(chunk)
        rows = slice(offset, offset + len(chunk))
        for finding in findings:
            if finding.column not in ID_COLUMNS:  # those were checked over the whole file
                self._add(finding, offset)
        valid = ~(self._ids.invalid[rows] | _any_rows(findings, len(chunk)))
        self._invalid[rows] |= ~valid
        if not valid.any():
            return CheckedChunk(offset=offset, size=len(chunk), rows=[], records=[], priors=[])
        frame = result.frame[valid] if result.frame is not None else ensure_valid(chunk[valid], require_target=False)
        return CheckedChunk(
            offset=offset,
            size=len(chunk),
            rows=(np.flatnonzero(valid) + offset + 1).tolist(),
            records=_records(frame),
            priors=self._ids.prior[rows][valid].tolist(),
        )

    def invalid_count(self) -> int:
        return int(self._invalid.sum())

    def problems(self) -> list[Problem]:
        """In schema order of columns, then of problem codes: the same whatever the chunk size."""
        keys = sorted(self._positions, key=lambda k: (COLUMN_NAMES.index(k[0]), _CODE_ORDER[k[1]]))
        problems = []
        for column, code, what in keys:
            rows = np.zeros(self._ids.rows, dtype=bool)
            rows[np.concatenate(self._positions[column, code, what])] = True
            problems.append(RowFinding(column=column, code=code, what=what, rows=rows).problem())
        return problems

    def _add(self, finding: RowFinding, offset: int) -> None:
        key = (finding.column, finding.code, finding.what)
        self._positions.setdefault(key, []).append(np.flatnonzero(finding.rows) + offset)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a canonical frame as `Encounter.to_record()` gives them: Python ints, str and None
    (the same values as `frame.to_dict("records")`, several times faster)."""
    names = [str(name) for name in frame.columns]
    values = zip(*(frame[name].tolist() for name in names), strict=True)
    return [dict(zip(names, row, strict=True)) for row in values]


def _any_rows(findings: list[RowFinding], rows: int) -> Mask:
    invalid = np.zeros(rows, dtype=bool)
    for finding in findings:
        invalid |= finding.rows
    return invalid
