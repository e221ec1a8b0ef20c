"""Capture: keyed ids, the local Parquet layout, and errors counted rather than raised."""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinrisk.capture.capturer import Capturer, problem_field
from clinrisk.capture.keys import IdKeyer, IdKeyError, local_key
from clinrisk.capture.local_sink import ParquetCaptureSink
from clinrisk.capture.records import ScoredRecord
from clinrisk.monitoring.window import read_window

KEY = b"k" * 32


def _record(encounter: int, patient: int) -> dict[str, Any]:
    return {"encounter_id": encounter, "patient_nbr": patient, "age": "[60-70)", "time_in_hospital": 3, "race": None}


def _item(encounter: int = 7, patient: int = 70) -> ScoredRecord:
    return ScoredRecord(_record(encounter, patient), 2, 0.31, "high", [("age", 0.2), ("race", -0.05)])


class _FailingSink:
    def put(self, rows: list[dict[str, Any]]) -> None:
        raise OSError("disk full")


def test_local_key_is_made_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    key = local_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_key(path) == key and len(key) == 32


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    local_key(path)
    path.chmod(0o644)
    with pytest.raises(IdKeyError, match="readable by others"):
        local_key(path)


def test_pseudonyms_are_stable_keyed_and_separate_per_kind() -> None:
    keyer = IdKeyer(KEY)
    assert keyer.record_key(7) == IdKeyer(KEY).record_key("7")
    assert keyer.record_key(7) != IdKeyer(b"j" * 32).record_key(7)
    assert keyer.record_key(7) != keyer.patient_key(7)


def test_captured_rows_land_in_the_firehose_layout_without_ids(tmp_path: Path) -> None:
    capturer = Capturer(sink=ParquetCaptureSink(tmp_path), keyer=IdKeyer(KEY), task="readmission")
    capturer.scored(request_id="req-1", version=3, items=[_item(), _item(8, 80)], count=2)
    capturer.refused(request_id="req-2", paths=["$.encounters[0].age", "$.encounters[4].age"])
    assert capturer.flush() == 3
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    files = sorted(p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("*.parquet"))
    assert files == [f"task=readmission/date={day}/model_version=0", f"task=readmission/date={day}/model_version=3"]
    now = datetime.now(UTC)
    table = read_window(tmp_path, task="readmission", start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    rows = {r["kind"] + str(r["record_key"]): r for r in table.to_pylist()}
    scored = rows["scored" + IdKeyer(KEY).record_key(7)]
    assert scored["patient_key"] == IdKeyer(KEY).patient_key(70)
    assert (scored["model_version"], scored["f_age"], scored["f_time_in_hospital"], scored["f_race"]) == (
        3, "[60-70)", 3, None,
    )  # fmt: skip
    assert json.loads(scored["factors"]) == [["age", 0.2], ["race", -0.05]]
    assert all(str(v) != "70" and v != 7 for r in table.to_pylist() for k, v in r.items() if k != "prior_encounters")
    refused = rows["refusedNone"]
    assert json.loads(refused["refused_paths"]) == ["$.encounters[].age"]


def test_a_failing_sink_is_counted_never_raised(tmp_path: Path) -> None:
    capturer = Capturer(sink=_FailingSink(), keyer=IdKeyer(KEY), task="readmission")
    capturer.scored(request_id="r", version=1, items=[_item()], count=1)
    assert capturer.flush() == 0
    assert (capturer.stats.captured, capturer.stats.errors, capturer.stats.written) == (1, 1, 0)


def test_a_full_buffer_drops_and_counts() -> None:
    capturer = Capturer(sink=_FailingSink(), keyer=IdKeyer(KEY), task="t", buffer_limit=2, flush_seconds=60)
    for _ in range(3):
        capturer.scored(request_id="r", version=1, items=[_item()], count=1)
    assert (capturer.stats.captured, capturer.stats.dropped) == (2, 1)


def test_a_record_that_cannot_be_made_is_counted() -> None:
    def broken() -> list[ScoredRecord]:
        raise ValueError("bad")

    capturer = Capturer(sink=_FailingSink(), keyer=IdKeyer(KEY), task="t", flush_seconds=60)
    capturer.scored(request_id="r", version=1, items=broken, count=1)
    capturer.flush()
    assert capturer.stats.errors == 1


def test_the_flusher_thread_writes_without_being_asked(tmp_path: Path) -> None:
    capturer = Capturer(sink=ParquetCaptureSink(tmp_path), keyer=IdKeyer(KEY), task="t", flush_seconds=0.05)
    capturer.scored(request_id="r", version=1, items=[_item()], count=1)
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while capturer.stats.written == 0 and datetime.now(UTC) < deadline:
        time.sleep(0.01)
    assert capturer.stats.written == 1


def test_problem_paths_lose_their_indices() -> None:
    assert problem_field("$.encounters[12].diag_1") == "$.encounters[].diag_1"


def test_the_shadow_is_captured_beside_the_answer_under_its_own_version(tmp_path: Path) -> None:
    from clinrisk.serving.capture import capture_scored
    from clinrisk.serving.scoring import RiskFactor, Scored

    factor = RiskFactor(factor="age", label="Age", value="[60-70)", contribution=0.2, direction="increases")
    answer = [Scored(probability=0.3, band="high", factors=[factor])]
    shadow = [Scored(probability=0.1, band="medium", factors=[])]
    capturer = Capturer(sink=ParquetCaptureSink(tmp_path), keyer=IdKeyer(KEY), task="readmission")
    capture_scored(
        capturer, request_id="req", version=4, records=lambda: ([_record(7, 70)], [1]), scored=answer, source="api",
        shadow=(5, shadow),
    )  # fmt: skip
    assert capturer.flush() == 2
    now = datetime.now(UTC)
    rows = read_window(tmp_path, task="readmission", start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    seen = sorted((r["role"], r["model_version"], r["probability"], r["band"]) for r in rows.to_pylist())
    assert seen == [("answer", 4, 0.3, "high"), ("shadow", 5, 0.1, "medium")]
