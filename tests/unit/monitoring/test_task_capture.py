"""A generic task's captures hold its input values (issue 14 part 6): the heart-disease task's declared
columns and subgroup columns, as text in one `inputs` map, never its record id or target; readmission's
rows keep their own columns and no map."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clinrisk.capture.capturer import Capturer
from clinrisk.capture.keys import IdKeyer
from clinrisk.capture.local_sink import ParquetCaptureSink
from clinrisk.capture.records import CAPTURE_SCHEMA, ScoredRecord
from clinrisk.capture.task_inputs import captured_columns
from clinrisk.monitoring.window import read_window
from clinrisk.serving.capture import capture_task_scored
from clinrisk.serving.scoring import RiskFactor, Scored
from clinrisk.taskspec.catalogue import find_task

KEY = b"k" * 32
HEART = find_task("heart-disease").spec
RECORD = {
    "row_id": "cleveland-17", "age": 63, "sex": 1, "cp": 4, "trestbps": 145.0, "chol": 233.0, "fbs": True,
    "restecg": 2, "thalach": 150, "exang": False, "oldpeak": 2.3, "slope": 3, "ca": None, "thal": 6, "num": 1,
}  # fmt: skip


def _scored() -> Scored:
    factor = RiskFactor(factor="cp", label="Chest pain type", value="4", contribution=0.4, direction="increases")
    return Scored(probability=0.62, band="high", factors=[factor])


def _window(root: Path, task: str) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return read_window(root, task=task, start=now - timedelta(hours=1), end=now + timedelta(hours=1)).to_pylist()


def test_a_heart_disease_capture_holds_its_inputs_as_text_and_no_id_or_target(tmp_path: Path) -> None:
    capturer = Capturer(sink=ParquetCaptureSink(tmp_path), keyer=IdKeyer(KEY), task="readmission")
    capture_task_scored(
        capturer, task=HEART.name, spec=HEART, request_id="r1", version=2, records=[RECORD], scored=[_scored()],
        source="api",
    )  # fmt: skip
    assert capturer.flush() == 1
    [row] = _window(tmp_path, HEART.name)
    inputs = dict(row["inputs"])  # type: ignore[call-overload]
    assert inputs == {
        "age": "63",
        "sex": "1",
        "cp": "4",
        "trestbps": "145",
        "chol": "233",
        "fbs": "1",
        "restecg": "2",
        "thalach": "150",
        "exang": "0",
        "oldpeak": "2.3",
        "slope": "3",
        "thal": "6",
    }  # fmt: skip  (ca is missing: no key)
    assert row["record_key"] == IdKeyer(KEY).record_key("cleveland-17")
    assert "cleveland-17" not in json.dumps(row, default=str)
    assert "row_id" not in inputs and "num" not in inputs
    assert captured_columns(HEART)[-1] == "site"  # a subgroup column, kept for the subgroup rates


def test_readmission_rows_keep_their_columns_and_no_inputs_map(tmp_path: Path) -> None:
    capturer = Capturer(sink=ParquetCaptureSink(tmp_path), keyer=IdKeyer(KEY), task="readmission")
    record = {"encounter_id": 7, "patient_nbr": 70, "age": "[60-70)"}
    capturer.scored(request_id="r", version=1, items=[ScoredRecord(record, 0, 0.1, "low", [])], count=1)
    capturer.flush()
    [row] = _window(tmp_path, "readmission")
    assert (row["f_age"], row["inputs"]) == ("[60-70)", None)
    assert CAPTURE_SCHEMA["inputs"] == "map<string,string>"
