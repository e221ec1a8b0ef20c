"""Outcomes: keyed on the way in, bad rows by number only, unmatched counted, realized metrics per version."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from clinrisk.capture.keys import IdKeyer
from clinrisk.errors import DataFileError
from clinrisk.monitoring.outcomes import ingest_outcomes, read_outcome_table, realized_performance
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.unit.monitoring.helpers import capture_table

KEYER = IdKeyer(b"o" * 32)
NOW = datetime(2027, 1, 20, tzinfo=UTC)


def test_rows_are_keyed_bad_rows_named_by_number_and_unmatched_counted(tmp_path: Path) -> None:
    source = tmp_path / "outcomes.csv"
    source.write_text("encounter_id,readmitted\n11,<30\n12,NO\nabc,NO\n13,maybe\n99,>30\n")
    captured = {KEYER.record_key(11), KEYER.record_key(12), KEYER.record_key(13)}
    report = ingest_outcomes(
        source, keyer=KEYER, outcomes_root=tmp_path / "out", captured_keys=captured, task="readmission", now=NOW
    )
    assert (report.rows_read, report.rows_stored, report.matched, report.unmatched) == (5, 3, 2, 1)
    assert [(b.count, b.rows) for b in report.bad_rows] == [(1, [3]), (1, [4])]
    assert "abc" not in report.model_dump_json() and "maybe" not in report.model_dump_json()
    stored = read_outcome_table(tmp_path / "out", "readmission").to_pylist()
    assert sorted((r["record_key"], r["label"]) for r in stored) == sorted(
        [(KEYER.record_key(11), 1), (KEYER.record_key(12), 0), (KEYER.record_key(99), 0)]
    )
    assert not any(r["record_key"] == "99" for r in stored)


def test_a_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "outcomes.csv"
    source.write_text("id,label\n1,1\n")
    with pytest.raises(DataFileError, match="missing column"):
        ingest_outcomes(source, keyer=KEYER, outcomes_root=tmp_path, captured_keys=set(), task="t", now=NOW)


def _outcomes(table: pa.Table, labels: np.ndarray) -> pa.Table:
    keys = table.column("record_key")
    return pa.table({"record_key": keys, "label": pa.array(labels, pa.int8()), "received_at": [1.0] * len(labels)})


def test_realized_metrics_per_version_and_the_gate_breaches(tmp_path: Path) -> None:
    frame = generate_cohort(3000, seed=8)
    labels = (frame["readmitted"] == "<30").to_numpy().astype(int)
    table = capture_table(frame, version=2)
    settings = Settings(home=tmp_path)
    [good] = realized_performance(table, _outcomes(table, labels), settings)
    assert good.model_version == 2 and good.outcomes == 3000
    assert good.auc is not None and good.auc > 0.6 and good.auc_below_floor is False
    assert 0.8 < good.observed_to_expected < 1.25 and good.calibration_outside_band is False  # type: ignore[operator]
    shuffled = np.random.default_rng(0).permutation(labels)  # outcomes unrelated to the scores
    [bad] = realized_performance(table, _outcomes(table, shuffled), settings)
    assert bad.auc_below_floor is True and any("below the gate's floor" in b for b in bad.breaches)


def test_realized_metrics_from_captures_read_back_from_parquet(tmp_path: Path) -> None:
    """The window reader's dictionary-encoded fields join and group like plain ones."""
    from datetime import timedelta

    from clinrisk.capture.local_sink import ParquetCaptureSink
    from clinrisk.monitoring.window import read_window

    frame = generate_cohort(2000, seed=9)
    labels = (frame["readmitted"] == "<30").to_numpy().astype(int)
    table = capture_table(frame, version=5, at=NOW.timestamp())
    ParquetCaptureSink(tmp_path).put([row | {"date": NOW.strftime("%Y-%m-%d")} for row in table.to_pylist()])
    captured = read_window(tmp_path, task="readmission", start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=1))
    [direct] = realized_performance(table, _outcomes(table, labels), Settings(home=tmp_path))
    [read] = realized_performance(captured, _outcomes(table, labels), Settings(home=tmp_path))
    assert read.model_dump() == direct.model_dump() and read.outcomes == 2000
