"""Bad task files and bad data stop `clinrisk pipeline run --task` at validate: one line naming the key,
exit 2, nothing trained or registered (issue 14 part 7)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clinrisk.local.cli import app
from clinrisk.taskspec.catalogue import TASKS_DIR
from tests.heart_synthetic import heart_frame, write_site_file

pytestmark = pytest.mark.integration
runner = CliRunner()
HEART = TASKS_DIR / "heart-disease.yaml"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def refused(*args: str) -> str:
    """Run, expect exit 2 and one error line (beside the stage marks); return that line."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(("✗", "✓"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def run_heart(tmp_path: Path, frame: pd.DataFrame, name: str = "processed.cleveland.data") -> str:
    return refused("pipeline", "run", "--task", "heart-disease", "--data", str(write_site_file(tmp_path / name, frame)))


def nothing_registered(home: Path) -> bool:
    return not (home / "store" / "runs").exists() or not any((home / "store" / "runs").glob("*/model"))


def test_a_category_outside_the_declared_codes(tmp_path: Path, home: Path) -> None:
    frame = heart_frame()
    frame.loc[4, "thal"] = 5.0
    line = run_heart(tmp_path, frame)
    assert "validate failed" in line and "unknown_code: 'thal'" in line
    assert nothing_registered(home)


def test_a_target_with_one_class(tmp_path: Path, home: Path) -> None:
    frame = heart_frame()
    frame["num"] = 0.0
    assert "single_class_target: 'num'" in run_heart(tmp_path, frame)
    assert nothing_registered(home)


def test_every_value_outside_its_plausible_range(tmp_path: Path) -> None:
    frame = heart_frame()
    frame["chol"] = 5.0  # mmol/l written where mg/dl is declared
    assert "all_out_of_range: 'chol'" in run_heart(tmp_path, frame)
    # Switzerland's chol is 0 in every row: 0 is declared "not recorded", so the column has no value.
    frame["chol"] = 0.0
    assert "all_missing: 'chol'" in run_heart(tmp_path, frame, "processed.switzerland.data")


def test_a_file_that_does_not_match_its_task(tmp_path: Path) -> None:
    fewer = run_heart(tmp_path, heart_frame().iloc[:, :10])
    assert "does not match task 'heart-disease'" in fewer and "10 fields per row" in fewer
    unlabelled = run_heart(tmp_path, heart_frame(), "cleveland-copy.csv")
    assert "source.file_label has no label for 'cleveland-copy.csv'" in unlabelled


def test_an_unknown_column_in_the_data_and_in_the_task_file(tmp_path: Path) -> None:
    data = tmp_path / "visits.csv"
    frame = heart_frame()
    frame.to_csv(data, index=False)
    task = tmp_path / "visits.yaml"
    assert runner.invoke(app, ["task", "init", str(data), "--target", "num", "-o", str(task)]).exit_code == 0
    frame.assign(colour="red").to_csv(data, index=False)
    line = refused("pipeline", "run", "--task", str(task), "--data", str(data))
    assert "does not match task 'visits': unknown columns colour" in line
    document = yaml.safe_load(task.read_text())
    document["subgroups"] = [{"name": "ward", "column": "ward"}]
    task.write_text(yaml.safe_dump(document))
    assert "subgroups[0] (ward).column: column 'ward' is not declared" in refused(
        "pipeline", "run", "--task", str(task), "--data", str(data)
    )


def test_two_tasks_with_the_same_name(tmp_path: Path) -> None:
    document = yaml.safe_load(HEART.read_text())
    document["gate"] = {"subgroup_min_size": 10}
    other = tmp_path / "my-heart.yaml"
    other.write_text(yaml.safe_dump(document))
    data = write_site_file(tmp_path / "processed.cleveland.data", heart_frame())
    line = refused("pipeline", "run", "--task", str(other), "--data", str(data))
    assert "name: task name 'heart-disease' is already used by" in line and "heart-disease.yaml" in line


def test_an_unknown_task_name() -> None:
    assert "no task named 'stroke'" in refused("pipeline", "run", "--task", "stroke")
