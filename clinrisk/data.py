"""Read and write tables in the UCI Diabetes 130-US hospitals layout (CSV or Parquet).

Reading does no validation (see `clinrisk.validation`); it only turns a file into a frame
or raises `DataFileError` with a one-line message that names the file, never its contents.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clinrisk.errors import DataFileError
from clinrisk.schema import MISSING_TOKEN


class FileFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


_SUFFIXES: dict[str, FileFormat] = {
    ".csv": FileFormat.CSV,
    ".csv.gz": FileFormat.CSV,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
}


def file_format(path: Path) -> FileFormat:
    """The format of `path`, from its suffix (case-insensitive)."""
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    known = ", ".join(_SUFFIXES)
    raise DataFileError(f"{path}: unknown file type; use one of {known}")


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a UCI-layout file as it is, without validation.

    CSV columns are all read as strings, so that validation sees text in numeric columns;
    `?` and empty cells are missing, and any other text (notably "None" and "NA") is a value.
    Parquet columns keep the types stored in the file.
    """
    path = Path(path)
    fmt = file_format(path)
    check_readable(path)
    frame = _read_csv(path) if fmt is FileFormat.CSV else _read_parquet(path)
    if frame.empty:
        raise DataFileError(f"{path}: the file has column names but no data rows")
    return frame


def write_table(frame: pd.DataFrame, path: Path | str) -> None:
    """Write `frame` as CSV (missing cells as `?`, as in the UCI file) or Parquet, by suffix."""
    path = Path(path)
    fmt = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is FileFormat.CSV:
        frame.to_csv(path, index=False, na_rep=MISSING_TOKEN)
    else:
        frame.to_parquet(path, index=False, engine="pyarrow")


def check_readable(path: Path) -> None:
    if not path.exists():
        raise DataFileError(f"{path}: file not found")
    if not path.is_file():
        raise DataFileError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty (0 bytes)")


@contextmanager
def reading_errors(path: Path, fmt: FileFormat) -> Iterator[None]:
    """Turn the ways a file can fail to read into one-line `DataFileError`s that never quote
    its contents (whole-file reads here, chunked reads in `clinrisk.batch`)."""
    try:
        yield
    except pd.errors.EmptyDataError:
        # A file of blank lines, or a .csv.gz that decompresses to nothing.
        raise DataFileError(f"{path}: the file holds no header and no rows") from None
    except pd.errors.ParserError as exc:
        # The C tokenizer's message gives line numbers and field counts, never cell text.
        detail = str(exc).strip().splitlines()[-1]
        raise DataFileError(f"{path}: not a well-formed CSV file ({detail})") from exc
    except UnicodeDecodeError:
        # `from None`: the decode error carries the raw bytes it failed on.
        raise DataFileError(f"{path}: not UTF-8 text; save the file as UTF-8 CSV") from None
    except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
        if fmt is FileFormat.PARQUET:
            raise DataFileError(f"{path}: not a readable Parquet file (corrupt or another format)") from exc
        # Unreadable, or a truncated/corrupt .csv.gz.
        raise DataFileError(f"{path}: cannot read the file ({type(exc).__name__})") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    with reading_errors(path, FileFormat.CSV):
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[MISSING_TOKEN, ""])


def _read_parquet(path: Path) -> pd.DataFrame:
    with reading_errors(path, FileFormat.PARQUET):
        table = pq.read_table(path)
    return table.to_pandas()
