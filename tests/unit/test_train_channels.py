"""The training script reads the channels the validate stage writes (gzip CSV) and skips what
is not a table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clinrisk.data.tables import CHANNEL_SUFFIX, write_table
from clinrisk.errors import ClinriskError
from sagemaker_jobs.train import read_channel


def test_a_channel_of_gzip_csv_files_is_read_whole(tmp_path: Path, valid_rows: pd.DataFrame) -> None:
    write_table(valid_rows.iloc[:3], tmp_path / f"part-1{CHANNEL_SUFFIX}")
    write_table(valid_rows.iloc[3:], tmp_path / "part-2.csv")
    (tmp_path / "manifest.json").write_text("{}")  # not a table: skipped
    (tmp_path / "nested.csv").mkdir()  # not a file: skipped

    frame = read_channel(tmp_path)

    pd.testing.assert_frame_equal(frame, valid_rows.reset_index(drop=True))


def test_a_channel_without_tables_names_the_formats(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")

    with pytest.raises(ClinriskError, match=r"holds no \.csv, \.csv\.gz, \.parquet, \.pq file"):
        read_channel(tmp_path)
