"""Read and write tables in the UCI Diabetes 130-US hospitals layout (CSV, gzip CSV or Parquet).

Reading does no validation (see `clinrisk.data.validation`); it only turns a file into a frame
or raises `DataFileError` with a one-line message that names the file, never its contents.

pyarrow is needed for Parquet only, and imported only when a Parquet file is read or written:
the validate and evaluate Lambdas ship without it (it is ~170 MB of Lambda's 250 MB), and the
channels they exchange with training are gzip CSV (`CHANNEL_SUFFIX`), which pandas reads on its
own, as does the SageMaker XGBoost framework container.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pandas as pd

from clinrisk.compat import StrEnum
from clinrisk.errors import DataFileError
from clinrisk.tasks.readmission.schema import MISSING_TOKEN

# The format of the train/validation/test channels: compact, and no pyarrow needed to read it.
CHANNEL_SUFFIX = ".csv.gz"
# For .csv.gz (ignored for .csv): no timestamp in the header, so equal frames give equal bytes;
# level 6, zlib's default, because 9 takes half as long again on the UCI file for 4% fewer bytes.
_GZIP_OPTIONS = {"method": "infer", "mtime": 0, "compresslevel": 6}


class FileFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


_SUFFIXES: dict[str, FileFormat] = {
    ".csv": FileFormat.CSV,
    ".csv.gz": FileFormat.CSV,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
}


TABLE_SUFFIXES: tuple[str, ...] = tuple(_SUFFIXES)


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
    """Write `frame` as CSV (missing cells as `?`, as in the UCI file; gzip for `.csv.gz`) or
    Parquet, by suffix."""
    path = Path(path)
    fmt = file_format(path)
    if fmt is FileFormat.PARQUET:
        _pyarrow(path)  # fail before creating anything
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is FileFormat.CSV:
        frame.to_csv(path, index=False, na_rep=MISSING_TOKEN, compression=_GZIP_OPTIONS)
    else:
        frame.to_parquet(path, index=False, engine="pyarrow")


def _pyarrow(path: Path) -> ModuleType:
    """pyarrow.parquet, or a `DataFileError` saying how to do without it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFileError(
            f"{path}: Parquet needs pyarrow, which is not installed here; install pyarrow or use CSV (.csv or .csv.gz)"
        ) from None
    return pq


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
    its contents (whole-file reads here, chunked reads in `clinrisk.batch.local`)."""
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
    except _unreadable() as exc:
        if fmt is FileFormat.PARQUET:
            raise DataFileError(f"{path}: not a readable Parquet file (corrupt or another format)") from exc
        # Unreadable, or a truncated/corrupt .csv.gz.
        raise DataFileError(f"{path}: cannot read the file ({type(exc).__name__})") from exc


def _unreadable() -> tuple[type[Exception], ...]:
    """What a corrupt or unreadable file raises. pyarrow's errors count only where pyarrow was
    imported: nothing else raises them, and looking them up must not import it."""
    pyarrow = sys.modules.get("pyarrow")
    arrow: tuple[type[Exception], ...] = (pyarrow.ArrowException,) if pyarrow is not None else ()
    return (*arrow, OSError, EOFError, zlib.error)


def _read_csv(path: Path) -> pd.DataFrame:
    with reading_errors(path, FileFormat.CSV):
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[MISSING_TOKEN, ""])


def _read_parquet(path: Path) -> pd.DataFrame:
    pq = _pyarrow(path)
    with reading_errors(path, FileFormat.PARQUET):
        table = pq.read_table(path)
    return table.to_pandas()
