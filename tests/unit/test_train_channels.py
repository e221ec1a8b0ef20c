"""The training script reads the channels the validate stage writes (gzip CSV) and skips what
is not a table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clinrisk.data.tables import CHANNEL_SUFFIX, write_table
from clinrisk.errors import ClinriskError
from clinrisk.taskspec.catalogue import TASKS_DIR
from sagemaker_jobs.train import channel_task, read_channel


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


def test_the_task_channel_names_the_task_and_its_absence_is_readmission(tmp_path: Path) -> None:
    """The `task` channel (SM_CHANNEL_TASK) holds the run's task file, as the validate stage wrote it."""
    shipped = TASKS_DIR / "heart-disease.yaml"
    channel = tmp_path / "task"
    channel.mkdir()
    (channel / "heart-disease.yaml").write_bytes(shipped.read_bytes())
    (channel / "manifest.json").write_text("{}")  # not a task file: skipped

    assert channel_task(channel).name == "heart-disease"
    assert channel_task(None).name == "readmission"
    (channel / "other.yaml").write_bytes(shipped.read_bytes())
    with pytest.raises(ClinriskError, match="must hold one task file, not 2"):
        channel_task(channel)
