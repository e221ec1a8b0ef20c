"""Batch scoring: a file of encounters in, a file of risk scores out, from the champion model.

The file is streamed in chunks, and every chunk goes the real-time API's way: checked against
the schema (`clinrisk.data.validation`), then scored by `ServingModel.score` on records shaped as
`Encounter.to_record()` gives them. A row that breaks the schema is left out and reported by
row number (1-based data rows of the whole file) and reason, never by value. That includes an
unknown category: the API rejects such an encounter (see `clinrisk.serving.prediction`), so batch
rejects the row. The `readmitted` column, if present, is ignored.

A patient's earlier encounters are counted over the whole file, not only the chunk: the two id
columns are read in full first. A row counts as an earlier encounter when its ids are valid,
even if another of its cells is not (the encounter took place).

Rows are written to a hidden file beside the destination, which is renamed onto it only when
the run completes, so a failed or rejected (`strict`) run leaves nothing behind.

The row rules live in `clinrisk.batch.rows` and the output cells in `clinrisk.batch.cloud`, which
cloud batch scoring uses too, so both score the same rows the same way. pyarrow is imported only
where a Parquet file is read or written.
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
from typing import IO, TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, Field

from clinrisk.batch.cloud import factor_text, output_columns
from clinrisk.batch.rows import ID_COLUMNS, NA_VALUES, Identities, RowChecker, check_columns
from clinrisk.capture.capturer import Capturer
from clinrisk.data.tables import FileFormat, check_readable, file_format, reading_errors
from clinrisk.data.validation import Problem
from clinrisk.errors import DataFileError, ReportedError
from clinrisk.ports import ObjectStore
from clinrisk.serving.capture import capture_scored
from clinrisk.serving.model_holder import ModelHolder, NoChampionError
from clinrisk.serving.scoring import Bands, Scored, ServingModel
from clinrisk.tasks.readmission.factors import FACTORS
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, PATIENT_ID, TARGET

if TYPE_CHECKING:
    import pyarrow as pa


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


class BatchRejectedError(ReportedError[BatchReport]):
    """Strict mode: the file has invalid rows, so nothing was written."""

    @staticmethod
    def message(report: BatchReport) -> str:
        return f"{report.rows_invalid:,} of {report.rows_read:,} rows are invalid; nothing was written"


def load_champion(store: ObjectStore) -> ServingModel:
    """The champion named by the serving pointer in `store`, loaded the way the prediction API loads it."""
    with tempfile.TemporaryDirectory(prefix="clinrisk-models-") as cache:
        holder = ModelHolder(store, check_seconds=0.0, cache_dir=Path(cache))
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
    capture: Capturer | None = None,
) -> BatchReport:
    """Score every valid row of `source` into `destination` (CSV or Parquet, by suffix), in input
    order, with the top `top_k` risk factors of each. `on_start` gets the number of rows once they
    are counted; `on_progress` the number of rows of each chunk done. With `strict`, any invalid
    row raises `BatchRejectedError` and nothing is written. Scored rows go to `capture`, if given."""
    if chunk_rows < 1 or not 0 <= top_k <= len(FACTORS):
        raise ValueError(f"chunk_rows must be positive and top_k between 0 and {len(FACTORS)}")
    started = time.perf_counter()
    reader = _Reader.open(source)
    file_format(destination)  # an unknown output type fails before any work
    ids = Identities.of(reader.ids())
    if on_start is not None:
        on_start(ids.rows)
    checker = RowChecker(ids)
    scored = 0
    run_id = f"batch-{uuid.uuid4().hex[:12]}"
    with _output(destination, top_k) as write:
        for offset, chunk in reader.chunks(chunk_rows):
            checked = checker.check(chunk, offset)
            if checked.records and not (strict and checker.invalid_count()):
                results = model.score(checked.records, checked.priors, bands=bands, top_k=top_k)
                write(_output_rows(checked.records, results, model.version, top_k))
                if capture is not None:
                    capture_scored(
                        capture, request_id=run_id, version=model.version, scored=results, source="batch",
                        records=lambda c=checked: (c.records, c.priors),  # type: ignore[misc]
                    )  # fmt: skip
                scored += len(checked.records)
            on_progress(len(chunk))
        rejected = strict and checker.invalid_count() > 0
        report = BatchReport(
            rows_read=ids.rows,
            rows_scored=0 if rejected else scored,
            rows_invalid=checker.invalid_count(),
            problems=checker.problems(),
            seconds=time.perf_counter() - started,
            model_version=model.version,
        )
        if rejected:
            raise BatchRejectedError(report)
    return report


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Reader:
    """A CSV or Parquet file read as `clinrisk.data.tables.read_table` reads it, in chunks, without the target."""

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
        check_columns(columns)
        return cls(path=path, fmt=fmt, columns=columns)

    def ids(self) -> pd.DataFrame:
        with reading_errors(self.path, self.fmt):
            if self.fmt is FileFormat.CSV:
                frame = pd.read_csv(
                    self.path, usecols=ID_COLUMNS, dtype=str, keep_default_na=False, na_values=NA_VALUES
                )
            else:
                frame = _parquet().read_table(self.path, columns=ID_COLUMNS).to_pandas()
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
                self.path, usecols=self.columns, chunksize=rows, dtype=str, keep_default_na=False, na_values=NA_VALUES
            )
            return
        for batch in _parquet().ParquetFile(self.path).iter_batches(batch_size=rows, columns=self.columns):
            yield batch.to_pandas()


def _parquet() -> Any:
    import pyarrow.parquet as pq  # here, not at the top: the Lambda bundles have no pyarrow

    return pq


def _parquet_columns(path: Path) -> list[str]:
    return list(_parquet().ParquetFile(path).schema_arrow.names)


# --------------------------------------------------------------------------- writing


def _parquet_schema(top_k: int) -> pa.Schema:
    import pyarrow as pa

    types = {ENCOUNTER_ID: pa.int64(), PATIENT_ID: pa.int64(), "probability": pa.float64(), "model_version": pa.int64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in output_columns(top_k)])


def _output_rows(records: list[dict[str, Any]], scored: list[Scored], version: int, top_k: int) -> pd.DataFrame:
    columns: dict[str, list[object]] = {
        ENCOUNTER_ID: [record[ENCOUNTER_ID] for record in records],
        PATIENT_ID: [record[PATIENT_ID] for record in records],
        "probability": [result.probability for result in scored],
        "band": [result.band for result in scored],
        "model_version": [version] * len(scored),
    }
    for i in range(top_k):
        columns[f"factor_{i + 1}"] = [factor_text(result.factors[i]) for result in scored]
    return pd.DataFrame(columns)


@contextmanager
def _output(destination: Path, top_k: int) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A writer of output chunks; the file appears at `destination` only if the block completes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        if file_format(destination) is FileFormat.PARQUET:
            schema = _parquet_schema(top_k)
            with _parquet().ParquetWriter(partial, schema) as writer:
                yield lambda frame: writer.write_table(_arrow_table(frame, schema))
        else:
            with _text_file(partial, gzipped=destination.name.lower().endswith(".gz")) as handle:
                pd.DataFrame(columns=output_columns(top_k)).to_csv(handle, index=False)
                yield lambda frame: frame.to_csv(handle, index=False, header=False)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def _arrow_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


@contextmanager
def _text_file(path: Path, *, gzipped: bool) -> Iterator[IO[str]]:
    with gzip.open(path, "wt", newline="") if gzipped else path.open("w", newline="") as handle:
        yield handle
