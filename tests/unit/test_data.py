from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clinrisk.data.tables import CHANNEL_SUFFIX, TABLE_SUFFIXES, FileFormat, file_format, read_table, write_table
from clinrisk.data.validation import ensure_valid
from clinrisk.errors import ClinriskError, DataFileError
from tests.unit.conftest import WriteCsv

SECRET = "ZZSECRET42"


def read_error(path: Path) -> str:
    """The message of the DataFileError that reading `path` raises; it must be one line."""
    with pytest.raises(DataFileError) as raised:
        read_table(path)
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --- reading CSV --------------------------------------------------------------------------


def test_csv_cells_are_read_as_text_with_question_mark_missing(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("race,max_glu_serum,num_medications,payer_code\n?,None,007,NA\nCaucasian,,3.5,\n")

    frame = read_table(path)

    assert frame["race"].isna().tolist() == [True, False]
    assert frame["max_glu_serum"].tolist()[0] == "None"  # a value: "not measured"
    assert frame["max_glu_serum"].isna().tolist() == [False, True]  # an empty cell is missing
    assert frame["num_medications"].tolist() == ["007", "3.5"]  # text, as written
    assert frame.loc[0, "payer_code"] == "NA"  # only ? and empty cells are missing


def test_csv_round_trip_writes_question_marks(valid_rows: pd.DataFrame, write_csv: WriteCsv) -> None:
    path = write_csv(valid_rows)

    lines = path.read_text().splitlines()

    assert len(lines) == 1 + len(valid_rows)
    assert ",?," in lines[2]  # row 102 lacks race
    pd.testing.assert_frame_equal(ensure_valid(read_table(path)), valid_rows)


@pytest.mark.parametrize("name", ["encounters.parquet", "encounters.pq", "encounters.csv.gz", "UPPER.CSV"])
def test_round_trip_by_suffix(tmp_path: Path, valid_rows: pd.DataFrame, name: str) -> None:
    path = tmp_path / "nested" / name

    write_table(valid_rows, path)

    pd.testing.assert_frame_equal(ensure_valid(read_table(path)), valid_rows)


def test_parquet_keeps_stored_types(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    path = tmp_path / "encounters.parquet"
    write_table(valid_rows, path)

    frame = read_table(path)

    assert frame["num_medications"].dtype == "int64"
    assert frame["max_glu_serum"].tolist()[0] == "None"


def test_gzip_csv_is_really_compressed(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    path = tmp_path / "encounters.csv.gz"
    write_table(valid_rows, path)

    with gzip.open(path, "rt") as text:
        assert text.readline().startswith("encounter_id,patient_nbr,")


# --- errors ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in read_error(tmp_path / "absent.csv")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()

    assert "not a regular file" in read_error(folder)


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "empty.csv.gz"])
def test_zero_byte_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")

    assert "empty (0 bytes)" in read_error(path)


def test_header_only_csv(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    path = tmp_path / "header.csv"
    path.write_text(",".join(valid_rows.columns) + "\n")

    assert "no data rows" in read_error(path)


def test_blank_csv(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n")

    assert "no header and no rows" in read_error(path)


def test_parquet_without_rows(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    path = tmp_path / "none.parquet"
    write_table(valid_rows.iloc[:0], path)

    assert "no data rows" in read_error(path)


@pytest.mark.parametrize("name", ["corrupt.parquet", "corrupt.pq"])
def test_corrupt_parquet(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(f"PAR1 not really parquet {SECRET}".encode())

    message = read_error(path)

    assert "not a readable Parquet file" in message
    assert SECRET not in message


def test_truncated_parquet(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    path = tmp_path / "cut.parquet"
    write_table(valid_rows, path)
    path.write_bytes(path.read_bytes()[:-40])

    assert "not a readable Parquet file" in read_error(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08 garbage " + SECRET.encode())

    message = read_error(path)

    assert "cannot read the file" in message
    assert SECRET not in message


def test_ragged_csv_names_the_line_but_not_the_cells(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(f"a,b\n1,2\n3,4,{SECRET}\n")

    message = read_error(path)

    assert "not a well-formed CSV file" in message
    assert "line 3" in message
    assert SECRET not in message


def test_non_utf8_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("race\nCaucasian\xff\n".encode("latin-1"))

    assert "not UTF-8" in read_error(path)


@pytest.mark.parametrize("name", ["encounters.xlsx", "encounters", "encounters.csv.zip"])
def test_unknown_suffix(tmp_path: Path, valid_rows: pd.DataFrame, name: str) -> None:
    path = tmp_path / name
    path.write_text("a\n1\n")

    assert "unknown file type" in read_error(path)
    with pytest.raises(DataFileError, match="unknown file type"):
        write_table(valid_rows, path)


def test_file_errors_are_clinrisk_errors() -> None:
    assert issubclass(DataFileError, ClinriskError)


def test_file_format_ignores_case() -> None:
    assert file_format(Path("x.CSV.GZ")) is FileFormat.CSV
    assert file_format(Path("x.Parquet")) is FileFormat.PARQUET


# --- the channel format, and Parquet without pyarrow -----------------------------------------


def test_channels_are_gzip_csv_written_the_same_every_time(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    first, second = tmp_path / "1" / f"test{CHANNEL_SUFFIX}", tmp_path / "2" / f"test{CHANNEL_SUFFIX}"
    write_table(valid_rows, first)
    write_table(valid_rows, second)

    assert CHANNEL_SUFFIX == ".csv.gz" and CHANNEL_SUFFIX in TABLE_SUFFIXES
    assert gzip.decompress(first.read_bytes()).startswith(b"encounter_id,patient_nbr,")
    assert first.read_bytes()[4:8] == bytes(4)  # the gzip header's timestamp is left at zero
    assert first.read_bytes() == second.read_bytes()


@pytest.fixture
def without_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing pyarrow fails, as in the Lambda bundles."""
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("without_pyarrow")
def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    stored = tmp_path / "stored.parquet"
    stored.write_bytes(b"PAR1 some bytes")
    fresh = tmp_path / "out" / "fresh.parquet"

    assert "Parquet needs pyarrow, which is not installed here" in read_error(stored)
    with pytest.raises(DataFileError, match=r"install pyarrow or use CSV \(\.csv or \.csv\.gz\)"):
        write_table(valid_rows, fresh)
    assert not fresh.parent.exists()  # nothing half-written


_ROUND_TRIP_SCRIPT = """
import sys
sys.modules["pyarrow"] = None  # as in the Lambda bundles: importing it fails
from pathlib import Path
from clinrisk.data.tables import read_table, write_table
from clinrisk.errors import DataFileError
source, channel, corrupt = map(Path, sys.argv[1:4])
write_table(read_table(source), channel)
assert read_table(channel).equals(read_table(source))
try:
    read_table(corrupt)
except DataFileError as error:
    print(error)
"""


def test_csv_needs_no_pyarrow(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    source, channel, corrupt = tmp_path / "in.csv", tmp_path / f"channel{CHANNEL_SUFFIX}", tmp_path / "bad.csv.gz"
    write_table(valid_rows, source)
    corrupt.write_bytes(b"\x1f\x8b\x08 garbage")

    command = [sys.executable, "-c", _ROUND_TRIP_SCRIPT, str(source), str(channel), str(corrupt)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert "cannot read the file" in result.stdout
    pd.testing.assert_frame_equal(ensure_valid(read_table(channel)), valid_rows)
