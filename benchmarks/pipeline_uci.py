"""Benchmark: the whole local pipeline on the real UCI file, plus 5-fold patient-grouped CV.

    .venv/bin/python benchmarks/pipeline_uci.py path/to/uci_diabetes_130.zip   (or a CSV path)

Prints one JSON object: test metrics on patients never seen in training, seconds per stage,
peak memory (this process and the training subprocess), CV AUC mean ± sd, and each figure's
target from issue 2 with whether it was met. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from clinrisk.pipeline.local import PipelineResult

CSV_IN_ZIP = "dataset_diabetes/diabetic_data.csv"
TARGETS = {"test_roc_auc_min": 0.68, "test_brier_max": 0.094, "test_ece_max": 0.015, "pipeline_seconds_max": 90.0}


def _csv(path: Path, workdir: Path) -> Path:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            archive.extract(CSV_IN_ZIP, workdir)
        return workdir / CSV_IN_ZIP
    return path


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def run_pipeline_once(csv: Path, home: Path) -> tuple[float, PipelineResult]:
    from clinrisk.pipeline.local import run_pipeline
    from clinrisk.runtime import build_ports
    from clinrisk.settings import Settings

    settings = Settings(home=home)
    started = time.perf_counter()
    result = run_pipeline(csv, settings, build_ports(settings))
    return round(time.perf_counter() - started, 1), result


def grouped_cv_auc(csv: Path, folds: int = 5, seed: int = 42) -> dict[str, object]:
    """Each fold's patients are the test set once; the rest is split by patient into train and
    validation (for early stopping and calibration), as the pipeline does."""
    from sklearn.metrics import roc_auc_score

    from clinrisk.data.splits import split_by_patient
    from clinrisk.data.task_binding import resolve_task
    from clinrisk.data.validation import load_encounters
    from clinrisk.model.training import Hyperparameters, train_model

    frame = load_encounters(csv)
    patients = np.sort(frame["patient_nbr"].unique())
    fold_of = dict(zip(patients, np.random.default_rng(seed).permutation(patients.size) % folds, strict=True))
    assignment = frame["patient_nbr"].map(fold_of).to_numpy()
    aucs = []
    for fold in range(folds):
        rest = frame[assignment != fold].reset_index(drop=True)
        parts = split_by_patient(rest, seed=seed + fold, test=0.0, validation=0.2)
        trained = train_model(parts["train"], parts["validation"], Hyperparameters(seed=seed))
        model = trained.risk_model()
        test = resolve_task().examples(frame[assignment == fold].reset_index(drop=True))
        aucs.append(float(roc_auc_score(test.labels, model.predict_features(test.features))))
    return {"folds": aucs, "mean": float(np.mean(aucs)), "sd": float(np.std(aucs, ddof=1))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path, help="uci_diabetes_130.zip or diabetic_data.csv")
    parser.add_argument("--skip-cv", action="store_true", help="skip the 5-fold cross-validation")
    args = parser.parse_args()
    from clinrisk.logs import quiet_libraries

    quiet_libraries()
    if not args.data.exists():
        print(json.dumps({"error": f"{args.data} not found"}))
        return 2
    with tempfile.TemporaryDirectory(prefix="clinrisk-bench-") as tmp:
        csv = _csv(args.data, Path(tmp))
        seconds, result = run_pipeline_once(csv, Path(tmp) / "home")
        peak = {"pipeline_process_mib": round(_peak_mib(resource.RUSAGE_SELF), 1),
                "training_subprocess_mib": round(_peak_mib(resource.RUSAGE_CHILDREN), 1)}  # fmt: skip
        cv = None if args.skip_cv else grouped_cv_auc(csv)
    metrics = {k: v for k, v in result.metrics.items() if v is not None}
    # The Brier score depends on the test set's prevalence; report the constant predictor's score
    # on the same rows and the skill against it, beside the absolute target.
    constant_brier = metrics["test_prevalence"] * (1 - metrics["test_prevalence"])
    report = {
        "benchmark": "pipeline_uci",
        "rows": result.rows,
        "outcome": result.outcome,
        "test": metrics,
        "test_constant_predictor_brier": constant_brier,
        "test_brier_skill": 1 - metrics["test_brier"] / constant_brier,
        "gate_reasons": result.gate_reasons,
        "pipeline_seconds": seconds,
        "stage_seconds": result.stage_seconds,
        "peak_memory": peak,
        "cv_auc_5fold_grouped": cv,
        "targets": TARGETS,
        "met": {
            "test_roc_auc": metrics["test_roc_auc"] >= TARGETS["test_roc_auc_min"],
            "test_brier": metrics["test_brier"] <= TARGETS["test_brier_max"],
            "test_ece": metrics["test_ece"] <= TARGETS["test_ece_max"],
            "pipeline_seconds": seconds <= TARGETS["pipeline_seconds_max"],
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
