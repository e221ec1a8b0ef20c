"""Check a batch file and split it into chunks of valid rows: the Plan state of cloud batch scoring.

The rules are `clinrisk score`'s, from the one place both take them (`clinrisk.batch.rows`), so
the cloud and the CLI score the same rows and report the same problems. Each chunk carries its
rows' counts of earlier encounters over the whole file, so it can be scored on its own, by any
worker, and a patient's encounters may fall in any chunks.

Why not `clinrisk.batch.local` itself: it reads and writes files by path (and Parquet), and imports the
model loading of the CLI; the Lambda bundle that runs this (the "pipeline" bundle: pandas, no
pyarrow) needs only this: CSV or gzip CSV held in memory, read with pandas.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from clinrisk.batch.rows import ID_COLUMNS, NA_VALUES, CheckedChunk, Identities, RowChecker, check_columns
from clinrisk.data.tables import FileFormat, reading_errors
from clinrisk.data.validation import Problem
from clinrisk.errors import DataFileError
from clinrisk.tasks.readmission.schema import TARGET

__all__ = ["CheckedChunk", "CheckedFile"]


class CheckedFile:
    """A CSV (or gzip CSV, by `name`) file held in memory: its header and id columns are
    checked on construction, its rows chunk by chunk through `chunks`."""

    def __init__(self, raw: bytes, *, name: str) -> None:
        self._path = Path(name)  # for messages only: the file is never opened by name
        if not raw:
            raise DataFileError(f"{name}: the file is empty (0 bytes)")
        self._raw = raw
        self._compression: Literal["gzip"] | None = "gzip" if name.lower().endswith(".gz") else None
        self._columns = [str(c) for c in self._read(nrows=0).columns if c != TARGET]
        check_columns(self._columns)
        ids = self._read(usecols=ID_COLUMNS)
        if ids.empty:
            raise DataFileError(f"{name}: the file has column names but no data rows")
        self._ids = Identities.of(ids[ID_COLUMNS])
        self._findings = RowChecker(self._ids)

    @property
    def rows(self) -> int:
        return self._ids.rows

    def chunks(self, rows: int) -> Iterator[CheckedChunk]:
        """Every `rows` consecutive rows of the file, checked, in file order."""
        if rows < 1:
            raise ValueError("rows must be positive")
        offset = 0
        with reading_errors(self._path, FileFormat.CSV):
            for frame in self._read(usecols=self._columns, chunksize=rows):
                chunk = frame.reset_index(drop=True)
                yield self._findings.check(chunk, offset)
                offset += len(chunk)

    @property
    def rows_invalid(self) -> int:
        return self._findings.invalid_count()

    def problems(self) -> list[Problem]:
        """Every problem found so far (all of them once `chunks` is exhausted)."""
        return self._findings.problems()

    def _read(self, **options: Any) -> Any:
        with reading_errors(self._path, FileFormat.CSV):
            return pd.read_csv(
                io.BytesIO(self._raw),
                compression=self._compression,
                dtype=str,
                keep_default_na=False,
                na_values=NA_VALUES,
                **options,
            )
