"""Batch scoring: a file of encounters in, a file of risk scores out, from the champion model.

The file is streamed in chunks, and every chunk goes the real-time API's way: checked against
the schema (`clinrisk.validation`), then scored by `ServingModel.score` on records shaped as
`Encounter.to_record()` gives them. A row that breaks the schema is left out and reported by
row number (1-based data rows of the whole file) and reason, never by value. That includes an
unknown category: the API rejects such an encounter (see `clinrisk.prediction`), so batch
rejects the row. The `readmitted` column, if present, is ignored.

A patient's earlier encounters are counted over the whole file, not only the chunk: the two id
columns are read in full first. A row counts as an earlier encounter when its ids are valid,
even if another of its cells is not (the encounter took place).

Rows are written to a hidden file beside the destination, which is renamed onto it only when
the run completes, so a failed or rejected (`strict`) run leaves nothing behind.
"""

from __future__ import annotations

import gzip
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from clinrisk.data import FileFormat, check_readable, file_format, reading_errors
from clinrisk.errors import ClinriskError, DataFileError, DataValidationError
from clinrisk.factors import FACTORS
from clinrisk.features import prior_encounter_counts
from clinrisk.model_holder import ModelHolder, NoChampionError
from clinrisk.runtime import build_store
from clinrisk.schema import COLUMN_NAMES, ENCOUNTER_ID, MISSING_TOKEN, PATIENT_ID, TARGET
from clinrisk.scoring import Bands, RiskFactor, Scored, ServingModel
from clinrisk.settings import Settings
from clinrisk.validation import (
    Mask,
    Problem,
    ProblemCode,
    RowFinding,
    ValidationReport,
    ensure_valid,
    validate_encounters,
    validate_rows,
)

ID_COLUMNS = [ENCOUNTER_ID, PATIENT_ID]
_CODE_ORDER = {code: i for i, code in enumerate(ProblemCode)}


class BatchReport(BaseModel):
    """The outcome of scoring one file. Problems name columns and row numbers, never values."""

    rows_read: int = Field(ge=0)
    rows_scored: int = Field(ge=0)
    rows_invalid: int = Field(ge=0)
    problems: list[Problem] = Field(description="Why rows are invalid; row numbers are 1-based data rows of the file.")
    seconds: float = Field(ge=0.0)
    model_version: int

    def summary(self) -> str:
        headline = (
            f"{self.rows_read:,} rows read, {self.rows_scored:,} scored by model version {self.model_version}, "
            f"{self.rows_invalid:,} invalid, in {self.seconds:.1f} s"
        )
        return "\n".join([headline, *(f"- {problem.message}" for problem in self.problems)])


class BatchRejectedError(ClinriskError):
    """Strict mode: the file has invalid rows, so nothing was written."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__(f"{report.rows_invalid:,} of {report.rows_read:,} rows are invalid; nothing was written")
        self.report = report

    def __reduce__(self) -> tuple[type[BatchRejectedError], tuple[BatchReport]]:
        return (type(self), (self.report,))


def load_champion(settings: Settings) -> ServingModel:
    """The champion named by the serving pointer, loaded the way the prediction API loads it."""
    with tempfile.TemporaryDirectory(prefix="clinrisk-models-") as cache:
        holder = ModelHolder(build_store(settings), check_seconds=0.0, cache_dir=Path(cache))
        try:
            return holder.current().champion
        except NoChampionError as error:
            if holder.status.error is not None:
                raise
            raise NoChampionError(f"{error}; `clinrisk pipeline run` trains and promotes one") from None


def score_file(
    source: Path,
    destination: Path,
    *,
    model: ServingModel,
    bands: Bands,
    chunk_rows: int,
    top_k: int,
    strict: bool,
    on_progress: Callable[[int], None],
    on_start: Callable[[int], None] | None = None,
) -> BatchReport:
    """Score every valid row of `source` into `destination` (CSV or Parquet, by suffix), in input
    order, with the top `top_k` risk factors of each. `on_start` gets the number of rows once they
    are counted; `on_progress` the number of rows of each chunk done. With `strict`, any invalid
    row raises `BatchRejectedError` and nothing is written."""
    if chunk_rows < 1 or not 0 <= top_k <= len(FACTORS):
        raise ValueError(f"chunk_rows must be positive and top_k between 0 and {len(FACTORS)}")
    started = time.perf_counter()
    reader = _Reader.open(source)
    file_format(destination)  # an unknown output type fails before any work
    ids = _Identities.of(reader.ids())
    if on_start is not None:
        on_start(ids.rows)
    findings = _Findings(ids)
    scored = 0
    with _output(destination, top_k) as write:
        for offset, chunk in reader.chunks(chunk_rows):
            records, priors = findings.check(chunk, offset)
            if records and not (strict and findings.any()):
                results = model.score(records, priors, bands=bands, top_k=top_k)
                write(_output_rows(records, results, model.version, top_k))
                scored += len(records)
            on_progress(len(chunk))
        rejected = strict and findings.any()
        seconds = time.perf_counter() - started
        report = findings.report(scored=0 if rejected else scored, seconds=seconds, version=model.version)
        if rejected:
            raise BatchRejectedError(report)
    return report


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Reader:
    """A CSV or Parquet file read as `clinrisk.data.read_table` reads it, in chunks, without the target."""

    path: Path
    fmt: FileFormat
    columns: list[str]

    @classmethod
    def open(cls, path: Path) -> _Reader:
        fmt = file_format(path)
        check_readable(path)
        with reading_errors(path, fmt):
            header = list(pd.read_csv(path, nrows=0).columns) if fmt is FileFormat.CSV else _parquet_columns(path)
        columns = [str(name) for name in header if name != TARGET]
        _check_columns(columns)
        return cls(path=path, fmt=fmt, columns=columns)

    def ids(self) -> pd.DataFrame:
        with reading_errors(self.path, self.fmt):
            if self.fmt is FileFormat.CSV:
                frame = pd.read_csv(self.path, usecols=ID_COLUMNS, dtype=str, keep_default_na=False, na_values=_NA)
            else:
                frame = pq.read_table(self.path, columns=ID_COLUMNS).to_pandas()
        if frame.empty:
            raise DataFileError(f"{self.path}: the file has column names but no data rows")
        return frame[ID_COLUMNS]

    def chunks(self, rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
        """(offset of the chunk's first row, chunk), with a fresh index from 0."""
        offset = 0
        with reading_errors(self.path, self.fmt):
            for chunk in self._frames(rows):
                yield offset, chunk.reset_index(drop=True)
                offset += len(chunk)

    def _frames(self, rows: int) -> Iterator[pd.DataFrame]:
        if self.fmt is FileFormat.CSV:
            yield from pd.read_csv(
                self.path, usecols=self.columns, chunksize=rows, dtype=str, keep_default_na=False, na_values=_NA
            )
            return
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=rows, columns=self.columns):
            yield batch.to_pandas()


# As `clinrisk.data.read_table`: every column as text, `?` and empty cells missing, nothing else.
_NA = [MISSING_TOKEN, ""]


def _parquet_columns(path: Path) -> list[str]:
    return list(pq.ParquetFile(path).schema_arrow.names)


def _check_columns(columns: list[str]) -> None:
    """Missing, unknown or repeated columns make the whole file unusable."""
    problems = validate_encounters(pd.DataFrame(columns=columns), require_target=False).report.problems
    problems = [problem for problem in problems if problem.code is not ProblemCode.EMPTY]
    if problems:
        raise DataValidationError(ValidationReport(rows=0, problems=problems))


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class _Identities:
    """The id columns of the whole file: which rows have bad ids, and each row's earlier encounters."""

    rows: int
    findings: list[RowFinding]
    invalid: Mask
    prior: npt.NDArray[np.int64]

    @classmethod
    def of(cls, ids: pd.DataFrame) -> _Identities:
        _, findings = validate_rows(ids)  # missing, not whole, below 1, or an encounter id used before
        invalid = _any_rows(findings, len(ids))
        valid = ids[~invalid].apply(pd.to_numeric).astype(np.int64)
        prior = np.zeros(len(ids), dtype=np.int64)
        prior[~invalid] = prior_encounter_counts(valid).to_numpy(dtype=np.int64)
        return cls(rows=len(ids), findings=findings, invalid=invalid, prior=prior)


class _Findings:
    """Row-level problems gathered chunk by chunk, with row numbers of the whole file."""

    def __init__(self, ids: _Identities) -> None:
        self._ids = ids
        self._invalid = ids.invalid.copy()
        self._positions: dict[tuple[str, ProblemCode, str], list[npt.NDArray[np.intp]]] = {}
        for finding in ids.findings:
            self._add(finding, 0)

    def check(self, chunk: pd.DataFrame, offset: int) -> tuple[list[dict[str, Any]], list[int]]:
        """The records of the chunk's valid rows (as `Encounter.to_record()` gives them) and their
        earlier-encounter counts; the other rows are recorded as invalid."""
        result, findings = validate_rows(chunk)
        rows = slice(offset, offset + len(chunk))
        for finding in findings:
            if finding.column not in ID_COLUMNS:  # those were checked over the whole file
                self._add(finding, offset)
        valid = ~(self._ids.invalid[rows] | _any_rows(findings, len(chunk)))
        self._invalid[rows] |= ~valid
        if not valid.any():
            return [], []
        frame = result.frame[valid] if result.frame is not None else ensure_valid(chunk[valid], require_target=False)
        return _records(frame), self._ids.prior[rows][valid].tolist()

    def any(self) -> bool:
        return bool(self._invalid.any())

    def report(self, *, scored: int, seconds: float, version: int) -> BatchReport:
        return BatchReport(
            rows_read=self._ids.rows,
            rows_scored=scored,
            rows_invalid=int(self._invalid.sum()),
            problems=self._problems(),
            seconds=seconds,
            model_version=version,
        )

    def _add(self, finding: RowFinding, offset: int) -> None:
        key = (finding.column, finding.code, finding.what)
        self._positions.setdefault(key, []).append(np.flatnonzero(finding.rows) + offset)

    def _problems(self) -> list[Problem]:
        """In schema order of columns, then of problem codes: the same whatever the chunk size."""
        keys = sorted(self._positions, key=lambda k: (COLUMN_NAMES.index(k[0]), _CODE_ORDER[k[1]]))
        problems = []
        for column, code, what in keys:
            rows = np.zeros(self._ids.rows, dtype=bool)
            rows[np.concatenate(self._positions[column, code, what])] = True
            problems.append(RowFinding(column=column, code=code, what=what, rows=rows).problem())
        return problems


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


# --------------------------------------------------------------------------- writing


def _output_columns(top_k: int) -> list[tuple[str, pa.DataType]]:
    fixed = [(ENCOUNTER_ID, pa.int64()), (PATIENT_ID, pa.int64()), ("probability", pa.float64())]
    fixed += [("band", pa.string()), ("model_version", pa.int64())]
    return fixed + [(f"factor_{i}", pa.string()) for i in range(1, top_k + 1)]


def _output_rows(records: list[dict[str, Any]], scored: list[Scored], version: int, top_k: int) -> pd.DataFrame:
    columns: dict[str, list[object]] = {
        ENCOUNTER_ID: [record[ENCOUNTER_ID] for record in records],
        PATIENT_ID: [record[PATIENT_ID] for record in records],
        "probability": [result.probability for result in scored],
        "band": [result.band for result in scored],
        "model_version": [version] * len(scored),
    }
    for i in range(top_k):
        columns[f"factor_{i + 1}"] = [_factor_text(result.factors[i]) for result in scored]
    return pd.DataFrame(columns)


def _factor_text(factor: RiskFactor) -> str:
    return f"{factor.factor}={factor.value} ({factor.contribution:+.3f})"


@contextmanager
def _output(destination: Path, top_k: int) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A writer of output chunks; the file appears at `destination` only if the block completes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.partial")
    schema = pa.schema(_output_columns(top_k))
    try:
        if file_format(destination) is FileFormat.PARQUET:
            with pq.ParquetWriter(partial, schema) as writer:
                yield lambda frame: writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
        else:
            with _text_file(partial, gzipped=destination.name.lower().endswith(".gz")) as handle:
                pd.DataFrame(columns=schema.names).to_csv(handle, index=False)
                yield lambda frame: frame.to_csv(handle, index=False, header=False)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _text_file(path: Path, *, gzipped: bool) -> Iterator[IO[str]]:
    with gzip.open(path, "wt", newline="") if gzipped else path.open("w", newline="") as handle:
        yield handle
