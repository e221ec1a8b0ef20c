"""Benchmark: the heart-disease task file as shipped, on the four UCI site files.

    .venv/bin/python benchmarks/heart_disease.py [DATA_DIR] [--grid]

DATA_DIR defaults to ../shared/data/heart_disease_uci (relative to the repository). Prints one JSON
object:
- Cleveland, repeated 5x5-fold stratified CV, XGBoost with the task file's `training:` settings
  (fixed rounds: no early stopping, 303 rows leave no room for a stopping split): ROC-AUC mean and
  sd over the 25 folds, and the Brier score and ECE of the out-of-fold predictions (mean of the 5
  repeats); the same for a logistic-regression reference (median imputation, standardised);
- external validation: both models trained on all of Cleveland, scored on Hungary, Switzerland, VA;
- the data validation problems of each site file (counts by code).
`--grid` also prints the CV AUC of the candidate settings the task file's values were chosen from.
Features come from the task file alone (`clinrisk.taskspec.features`). Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinrisk.data.task_tables import TaskTable, load_task_table
from clinrisk.evaluation.metrics import expected_calibration_error, roc_auc
from clinrisk.model.training import Hyperparameters, xgboost_params
from clinrisk.taskspec.catalogue import find_task
from clinrisk.taskspec.features import feature_matrix
from clinrisk.taskspec.spec import TaskSpec, TrainingOverrides

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "heart_disease_uci"
SITES = {
    "cleveland": "processed.cleveland.data",
    "hungary": "processed.hungarian.data",
    "switzerland": "processed.switzerland.data",
    "va": "processed.va.data",
}
REPEATS, FOLDS, SEED = 5, 5, 42
TARGETS = {"cleveland_cv_auc_min": 0.90, "hungary_auc_min": 0.87}
# The settings tried once on Cleveland CV before writing the task file's `training:` section.
GRID: dict[str, dict[str, Any]] = {
    "readmission defaults (depth 6, mcw 50, 3000 rounds)": {"num_round": 3000},
    "depth 6, mcw 1, 300 rounds": {"max_depth": 6, "min_child_weight": 1, "num_round": 300},
    "depth 3, mcw 3, lambda 5, 300 rounds": {"max_depth": 3, "min_child_weight": 3, "reg_lambda": 5, "num_round": 300},
    "depth 2, mcw 3, lambda 10, 200 rounds": {
        "max_depth": 2,
        "min_child_weight": 3,
        "reg_lambda": 10,
        "num_round": 200,
        "colsample_bytree": 0.6,
        "eta": 0.05,
    },
    "depth 1 (additive), mcw 3, lambda 10, 300 rounds": {
        "max_depth": 1,
        "min_child_weight": 3,
        "reg_lambda": 10,
        "num_round": 300,
        "eta": 0.05,
    },
}

Model = Any  # a fitted predictor: (features) -> probabilities


def fit_xgboost(features: pd.DataFrame, labels: np.ndarray, hp: Hyperparameters) -> Model:
    import xgboost as xgb

    params = xgboost_params(hp.model_copy(update={"nthread": 1}), hp.scale_pos_weight or 1.0)
    booster = xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=hp.num_round)
    return lambda x: booster.predict(xgb.DMatrix(x))


def fit_logistic(features: pd.DataFrame, labels: np.ndarray) -> Model:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=1000),
    )
    model.fit(features, labels)
    return lambda x: model.predict_proba(x)[:, 1]


def cross_validate(features: pd.DataFrame, labels: np.ndarray, fit: Any) -> dict[str, float]:
    from sklearn.model_selection import RepeatedStratifiedKFold

    aucs, briers, eces = [], [], []
    splitter = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=SEED)
    out_of_fold = np.zeros(len(labels))
    for fold, (train, test) in enumerate(splitter.split(features, labels)):
        model = fit(features.iloc[train], labels[train])
        out_of_fold[test] = model(features.iloc[test])
        aucs.append(roc_auc(labels[test], out_of_fold[test]))
        if (fold + 1) % FOLDS == 0:  # one repeat done: every row has an out-of-fold score
            briers.append(float(np.mean((out_of_fold - labels) ** 2)))
            eces.append(expected_calibration_error(labels, out_of_fold))
    return {
        "roc_auc_mean": round(float(np.mean(aucs)), 4),
        "roc_auc_sd": round(float(np.std(aucs, ddof=1)), 4),
        "brier": round(float(np.mean(briers)), 4),
        "ece": round(float(np.mean(eces)), 4),
    }


def external(model: Model, sites: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> dict[str, dict[str, float]]:
    results = {}
    for site, (features, labels) in sites.items():
        scores = model(features)
        results[site] = {
            "n": len(labels),
            "prevalence": round(float(labels.mean()), 3),
            "roc_auc": round(roc_auc(labels, scores), 4),
            "brier": round(float(np.mean((scores - labels) ** 2)), 4),
        }
    return results


def _site(task: TaskSpec, path: Path) -> tuple[TaskTable, pd.DataFrame, np.ndarray]:
    table = load_task_table(task, [path])
    known = table.labels.notna().to_numpy()
    return table, feature_matrix(task, table.frame).loc[known], table.labels.to_numpy()[known].astype(int)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA, help="folder of the four site files")
    parser.add_argument("--grid", action="store_true", help="also print the CV AUC of the candidate settings")
    args = parser.parse_args()
    missing = [name for name in SITES.values() if not (args.data / name).is_file()]
    if missing:
        print(f"heart-disease data absent: {args.data} lacks {', '.join(missing)}", file=sys.stderr)
        return 2

    task = find_task(str(ROOT / "tasks" / "heart-disease.yaml"))
    loaded = {site: _site(task.spec, args.data / name) for site, name in SITES.items()}
    hp = Hyperparameters.for_task(task.spec.training)
    x, y = loaded["cleveland"][1], loaded["cleveland"][2]
    others = {site: (features, labels) for site, (_, features, labels) in loaded.items() if site != "cleveland"}
    report: dict[str, Any] = {
        "task": task.spec.name,
        "task_sha256": task.sha256,
        "hyperparameters": task.spec.training.given(),
        "validation_problems": {
            site: dict(Counter(problem.code.value for problem in table.report.problems))
            for site, (table, _, _) in loaded.items()
        },
        "cleveland_cv": {
            "design": f"{REPEATS}x{FOLDS}-fold stratified, seed {SEED}",
            "xgboost": cross_validate(x, y, lambda a, b: fit_xgboost(a, b, hp)),
            "logistic_regression": cross_validate(x, y, fit_logistic),
        },
        "external_trained_on_cleveland": {
            "xgboost": external(fit_xgboost(x, y, hp), others),
            "logistic_regression": external(fit_logistic(x, y), others),
        },
    }
    if args.grid:
        report["grid_cleveland_cv_auc"] = {
            label: cross_validate(
                x, y, lambda a, b, o=overrides: fit_xgboost(a, b, Hyperparameters.for_task(TrainingOverrides(**o)))
            )["roc_auc_mean"]
            for label, overrides in GRID.items()
        }
    report["targets"] = {
        "cleveland_cv_auc_min": {"target": 0.90, "met": report["cleveland_cv"]["xgboost"]["roc_auc_mean"] >= 0.90},
        "hungary_auc_min": {
            "target": 0.87,
            "met": report["external_trained_on_cleveland"]["xgboost"]["hungary"]["roc_auc"] >= 0.87,
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
