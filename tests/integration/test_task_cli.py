"""`clinrisk task validate` and `clinrisk task init` through the command line.

The real Cleveland file is used only by the `uci` test at the end (skipped without it); the same
behaviour is checked on synthetic files first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clinrisk.data.task_tables import load_task_table
from clinrisk.evaluation.metrics import roc_auc
from clinrisk.local.cli import app
from clinrisk.model.training import Hyperparameters, xgboost_params
from clinrisk.taskspec.catalogue import TASKS_DIR
from clinrisk.taskspec.features import feature_matrix
from clinrisk.taskspec.spec import load_task
from tests.heart_synthetic import COLUMNS, heart_frame, write_site_file

HEART = str(TASKS_DIR / "heart-disease.yaml")
HEART_DIR = Path(os.environ.get("CLINRISK_HEART_UCI_DIR", Path(__file__).parents[3] / "shared/data/heart_disease_uci"))
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_validate_a_clean_file_by_task_name(tmp_path: Path) -> None:
    path = write_site_file(tmp_path / "processed.cleveland.data", heart_frame())
    code, output = invoke("task", "validate", "heart-disease", str(path))
    assert code == 0, output
    assert "120 rows: no problems" in output


def test_validate_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    frame = heart_frame()
    frame["chol"] = 0.0
    frame.loc[4, "thal"] = 5.0
    path = write_site_file(tmp_path / "processed.switzerland.data", frame)
    code, output = invoke("task", "validate", HEART, str(path))
    assert code == 2
    assert "2 problems" in output
    assert "column 'chol': no row has a value (120 rows missing" in output
    assert "column 'thal': a code outside 3, 6, 7 in 1 row (row 5)" in output


def test_a_file_that_does_not_match_its_task_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_site_file(tmp_path / "processed.va.data", heart_frame().iloc[:, :10])
    code, output = invoke("task", "validate", HEART, str(path))
    assert code == 2
    assert output.count("\n") == 1 and "does not match task 'heart-disease'" in output


def test_a_bad_task_file_lists_its_problems_and_exits_2(tmp_path: Path) -> None:
    document = yaml.safe_load(Path(HEART).read_text())
    document["target"]["column"] = "diagnosis"
    document["plugins"] = ["nope"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    code, output = invoke("task", "validate", str(bad), str(tmp_path / "any.csv"))
    assert code == 2
    assert "target.column: column 'diagnosis' is not declared" in output
    assert "plugins[0]: unknown plugin 'nope'" in output


def _visits_csv(path: Path, rows: int = 300, seed: int = 5) -> Path:
    """An ordinary tabular CSV: header, ids, numeric, coded, text and yes/no columns, a yes/no target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 90, rows)
    lactate = np.round(rng.gamma(2.0, 1.0, rows), 2)
    ward = rng.choice(["ICU", "MED", "SURG"], rows)
    risk = 0.04 * (age - 55) + 0.6 * (lactate - 2) + 0.8 * (ward == "ICU")
    frame = pd.DataFrame(
        {
            "visit": [f"V{i:05d}" for i in range(rows)],
            "patient": [f"P{i // 2:05d}" for i in range(rows)],
            "age": age,
            "lactate": lactate.astype(object),
            "ward": ward,
            "smoker": rng.choice(["yes", "no"], rows),
            "note": [f"free text {i}" for i in range(rows)],
            "sepsis": np.where(rng.random(rows) < 1 / (1 + np.exp(-risk)), "yes", "no"),
        }
    )
    frame.loc[[3, 7], "lactate"] = "N/A"
    frame.to_csv(path, index=False)
    return path


def test_init_drafts_a_task_that_loads_validates_its_own_file_and_gives_features(tmp_path: Path) -> None:
    data = _visits_csv(tmp_path / "visits.csv")
    out = tmp_path / "tasks" / "visits.yaml"
    code, output = invoke(
        "task", "init", str(data), "--target", "sepsis", "--positive", "yes", "--id", "visit", "--group", "patient",
        "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    spec = load_task(out).spec
    assert (spec.record_id, spec.group_id, spec.target.positive) == ("visit", "patient", ["yes"])
    types = {column.name: column.type for column in spec.columns}
    assert types == {
        "visit": "identifier",
        "patient": "identifier",
        "age": "numeric",
        "lactate": "numeric",
        "ward": "categorical",
        "smoker": "boolean",
        "sepsis": "boolean",
    }
    assert spec.missing_markers == ["N/A"]
    assert "note: text with 300 distinct values; not a feature, left out" in output
    assert "lactate: numeric, unit unknown" in output
    table = load_task_table(spec, [data])
    assert table.report.ok, table.report.summary()
    assert table.labels.notna().all() and 0 < table.labels.mean() < 1
    matrix = feature_matrix(spec, table.frame)
    assert list(matrix.columns) == ["age", "lactate", "ward=ICU", "ward=MED", "ward=SURG", "smoker"]
    assert int(matrix["lactate"].isna().sum()) == 2
    assert "300 rows: shallow trees written under training:" in output
    assert _held_out_auc(matrix, table.labels.to_numpy(), Hyperparameters.for_task(spec.training)) > 0.7


def _held_out_auc(matrix: pd.DataFrame, labels: np.ndarray, hp: Hyperparameters) -> float:
    """Train on the first 200 rows with the draft's settings, score the rest (the planted signal is strong)."""
    import xgboost as xgb

    train = xgb.DMatrix(matrix.iloc[:200], label=labels[:200])
    booster = xgb.train(xgboost_params(hp, 1.0), train, num_boost_round=100)
    return roc_auc(labels[200:], booster.predict(xgb.DMatrix(matrix.iloc[200:])))


def test_the_trainer_defaults_cannot_fit_a_small_file_which_is_why_the_draft_overrides_them(tmp_path: Path) -> None:
    data = _visits_csv(tmp_path / "visits.csv")
    code, output = invoke(
        "task", "init", str(data), "--target", "sepsis", "--positive", "yes", "-o", str(tmp_path / "v.yaml")
    )
    assert code == 0, output
    spec = load_task(tmp_path / "v.yaml").spec
    table = load_task_table(spec, [data])
    assert _held_out_auc(feature_matrix(spec, table.frame), table.labels.to_numpy(), Hyperparameters()) == 0.5


def test_init_on_a_headerless_site_file_finds_the_threshold_target_and_zero_as_missing(tmp_path: Path) -> None:
    frame = heart_frame()
    frame.loc[[0, 5, 9], "chol"] = 0.0
    frame.loc[[2, 4], "ca"] = None
    data = write_site_file(tmp_path / "site.data", frame)
    out = tmp_path / "heart.yaml"
    code, output = invoke("task", "init", str(data), "--target", "num", "--names", ",".join(COLUMNS), "-o", str(out))
    assert code == 0, output
    spec = load_task(out).spec
    assert spec.source.header is False and spec.source.row_id == "row_id" and spec.record_id == "row_id"
    assert spec.target.positive_if == "> 0"
    assert spec.missing_markers == ["?"]
    chol = spec.column("chol")
    assert chol is not None and chol.type == "numeric" and chol.missing_values == [0]
    assert "chol: 0 read as 'not recorded'" in output
    assert "the file has no header" in output
    table = load_task_table(spec, [data])
    assert table.report.ok, table.report.summary()
    assert table.frame["chol"].isna().sum() == 3


def test_init_without_a_positive_value_for_a_text_target_says_so(tmp_path: Path) -> None:
    data = _visits_csv(tmp_path / "visits.csv")
    code, output = invoke("task", "init", str(data), "--target", "ward", "-o", str(tmp_path / "t.yaml"))
    assert code == 2
    assert "target 'ward': cannot tell the positive class; give --positive" in output
    code, output = invoke("task", "init", str(data), "--target", "outcome", "-o", str(tmp_path / "t.yaml"))
    assert code == 2 and "no column 'outcome'" in output


@pytest.mark.uci
def test_the_real_site_files_against_the_shipped_task_and_init_on_cleveland(tmp_path: Path) -> None:
    files = {site: HEART_DIR / f"processed.{site}.data" for site in ("cleveland", "hungarian", "switzerland", "va")}
    if not all(path.is_file() for path in files.values()):
        pytest.skip(f"the UCI heart-disease files are not in {HEART_DIR} (set CLINRISK_HEART_UCI_DIR)")
    code, output = invoke("task", "validate", HEART, str(files["cleveland"]), str(files["hungarian"]), str(files["va"]))
    assert code == 0, output
    code, output = invoke("task", "validate", HEART, str(files["switzerland"]))
    assert code == 2
    assert "column 'chol': no row has a value (123 rows missing, 123 of them holding a value" in output
    out = tmp_path / "cleveland.yaml"
    code, output = invoke(
        "task", "init", str(files["cleveland"]), "--target", "num", "--names", ",".join(COLUMNS), "-o", str(out)
    )
    assert code == 0, output
    spec = load_task(out).spec
    table = load_task_table(spec, [files["cleveland"]])
    assert table.report.ok, table.report.summary()
    assert int(table.labels.sum()) == 139 and len(table.labels) == 303
