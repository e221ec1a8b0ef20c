"""Every bad input named by the spine issue: the CLI exits non-zero with one clear line, and
nothing is registered; the champion and the serving pointer are unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clinrisk.data.tables import write_table
from clinrisk.local.cli import app
from clinrisk.runtime import build_ports
from clinrisk.settings import Settings
from tests.conftest import cohort
from tests.integration.conftest import pointer_bytes

pytestmark = pytest.mark.integration

SECRET = "ZZSECRET42"  # a value that must never appear in output


def _base() -> pd.DataFrame:
    return cohort(600, 31).copy()


def _missing_file(tmp: Path) -> Path:
    return tmp / "does-not-exist.csv"


def _empty_file(tmp: Path) -> Path:
    (tmp / "empty.csv").write_bytes(b"")
    return tmp / "empty.csv"


def _header_only(tmp: Path) -> Path:
    (tmp / "header.csv").write_text(",".join(_base().columns) + "\n")
    return tmp / "header.csv"


def _written(frame: pd.DataFrame, tmp: Path, name: str = "bad.csv") -> Path:
    write_table(frame, tmp / name)
    return tmp / name


def _missing_column(tmp: Path) -> Path:
    return _written(_base().drop(columns=["age"]), tmp)


def _text_in_numeric(tmp: Path) -> Path:
    frame = _base().astype({"num_medications": object})
    frame.loc[frame.index[3], "num_medications"] = SECRET
    return _written(frame, tmp)


def _unknown_category(tmp: Path) -> Path:
    frame = _base()
    frame.loc[frame.index[5], "race"] = SECRET
    return _written(frame, tmp)


def _bad_target(tmp: Path) -> Path:
    frame = _base()
    frame.loc[frame.index[2], "readmitted"] = SECRET
    return _written(frame, tmp)


def _single_class(tmp: Path) -> Path:
    return _written(_base().assign(readmitted="NO"), tmp)


def _corrupt_parquet(tmp: Path) -> Path:
    path = _written(_base(), tmp, "good.parquet")
    data = path.read_bytes()
    (tmp / "corrupt.parquet").write_bytes(data[: len(data) // 2])
    return tmp / "corrupt.parquet"


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (_missing_file, "file not found"),
    "empty file": (_empty_file, "empty"),
    "header only": (_header_only, "no data rows"),
    "required column missing": (_missing_column, "'age'"),
    "text in a numeric column": (_text_in_numeric, "num_medications"),
    "unknown category": (_unknown_category, "race"),
    "target outside <30/>30/NO": (_bad_target, "readmitted"),
    "single-class target": (_single_class, "single_class_target"),
    "corrupt parquet": (_corrupt_parquet, "parquet"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_the_run_and_changes_nothing(
    case: str, tmp_path: Path, home_with_champion: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = home_with_champion()
    registry = build_ports(settings).registry
    versions_before = [v.version for v in registry.versions()]
    champion_before = registry.champion_version()
    pointer_before = pointer_bytes(settings)
    outbox_before = settings.outbox_path.read_text()

    make, expected = CASES[case]
    path = make(tmp_path)
    monkeypatch.setenv("CLINRISK_HOME", str(settings.home_dir))
    result = CliRunner().invoke(app, ["pipeline", "run", "--data", str(path)])

    assert result.exit_code == 2, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
    assert expected.lower() in error_lines[0].lower()
    assert SECRET not in result.output
    assert [v.version for v in registry.versions()] == versions_before
    assert registry.champion_version() == champion_before
    assert pointer_bytes(settings) == pointer_before
    # The failed run was reported, and named its stage.
    new_notes = settings.outbox_path.read_text()[len(outbox_before) :]
    assert "failed at validate" in new_notes


def test_data_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    frame = _base().drop(columns=["age"]).astype({"num_medications": object})
    frame.loc[frame.index[3], "num_medications"] = SECRET
    frame.loc[frame.index[5], "race"] = SECRET
    path = _written(frame, tmp_path)
    result = CliRunner().invoke(app, ["data", "validate", str(path), "--json"])
    assert result.exit_code == 2
    assert SECRET not in result.output
    report = json.loads(result.stdout)
    codes = {(p["column"], p["code"]) for p in report["problems"]}
    assert {("age", "missing_column"), ("num_medications", "not_integer"), ("race", "unknown_category")} <= codes
    text_problem = next(p for p in report["problems"] if p["column"] == "num_medications")
    assert text_problem["example_rows"] == [4]


def test_data_synth_writes_a_valid_cohort(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.csv"
    result = CliRunner().invoke(app, ["data", "synth", "--rows", "500", "--seed", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    validated = CliRunner().invoke(app, ["data", "validate", str(out)])
    assert validated.exit_code == 0, validated.output
