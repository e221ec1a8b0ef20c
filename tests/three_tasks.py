"""Three tasks live at once (issue 14): readmission, heart disease (its shipped task file, trained on
its synthetic cohort) and a stroke task that `clinrisk task init` drafts from a synthetic CSV, all
trained and promoted into one local home, with the knowledge corpus ingested. The integration test
of the task routes and `benchmarks/tasks_serving.py` build their home with this."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinrisk.data.tables import write_table
from clinrisk.data.task_binding import resolve_task
from clinrisk.local.cli import app
from clinrisk.pipeline.local import run_pipeline
from clinrisk.runtime import build_ports
from clinrisk.taskspec.catalogue import TASKS_DIR
from tests.conftest import PIPELINE_ROWS, cohort, local_settings

DRAFTED = "stroke"
KNOWLEDGE = Path(__file__).resolve().parents[1] / "knowledge"


@contextmanager
def cli_home(home: Path) -> Iterator[None]:
    """The CLI's home for a module's fixture, with the bootstrap cut to 50 rounds (CIs only need to exist)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLINRISK_HOME", str(home))
        env.setenv("CLINRISK_BOOTSTRAP_ROUNDS", "50")
        yield


def stroke_frame(rows: int = 1500, seed: int = 8) -> pd.DataFrame:
    """One row per visit of a patient: demographics, vitals, a few codes and text categories, `stroke` 0/1,
    with a planted signal (age, hypertension, glucose, smoking) and some blank BMIs."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 95, rows)
    hypertension = rng.integers(0, 2, rows)
    glucose = np.round(rng.uniform(55, 280, rows), 1)
    smoking = rng.choice(["never", "former", "current"], rows, p=[0.5, 0.3, 0.2])
    risk = 0.06 * (age - 60) + 0.9 * hypertension + 0.01 * (glucose - 110) + 0.7 * (smoking == "current") - 1.6
    bmi = np.round(rng.uniform(16, 48, rows), 1).astype(object)
    bmi[rng.random(rows) < 0.05] = ""
    return pd.DataFrame(
        {
            "visit_id": np.arange(100_001, 100_001 + rows),
            "age": age,
            "sex": rng.choice(["F", "M"], rows),
            "hypertension": hypertension,
            "avg_glucose_level": glucose,
            "bmi": bmi,
            "smoking_status": smoking,
            "stroke": (rng.random(rows) < 1 / (1 + np.exp(-risk))).astype(int),
        }
    )


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def build_three_tasks(root: Path) -> Path:
    """`root/home` with a champion for each of the three tasks, and `root/tasks` holding the drafted
    task file and heart disease's: what `CLINRISK_TASKS_DIR` names for serving. The CLI reads the home
    from the environment: set CLINRISK_HOME to `root/home` first."""
    home, tasks = root / "home", root / "tasks"
    settings = local_settings(home)
    data = root / "readmission.parquet"
    write_table(cohort(PIPELINE_ROWS, 7), data)
    assert run_pipeline(data, settings, build_ports(settings)).outcome == "promoted"
    heart = resolve_task("heart-disease").synthesize(root / "heart", rows=800, seed=5)
    _promoted("pipeline", "run", "--task", "heart-disease", "--data", str(heart[0]))
    csv = root / "stroke.csv"
    stroke_frame().to_csv(csv, index=False)
    drafted = tasks / f"{DRAFTED}.yaml"
    _cli("task", "init", str(csv), "--target", "stroke", "--positive", "1", "--id", "visit_id", "-o", str(drafted))
    _promoted("pipeline", "run", "--task", str(drafted), "--data", str(csv))
    shutil.copy(TASKS_DIR / "heart-disease.yaml", tasks / "heart-disease.yaml")
    # The knowledge corpus of every task that has one (readmission, heart disease; not the drafted task).
    _cli("rag", "ingest", str(KNOWLEDGE))
    return home


def _promoted(*args: str) -> None:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["outcome"] == "promoted", run
