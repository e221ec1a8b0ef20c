"""MLflow tracking of a candidate: one run with params, metrics, plots, the evaluation report,
a model card and the pyfunc model, registered as a new version with alias `challenger`."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinrisk.evaluation import EvaluationReport, ScoredTestSet
from clinrisk.metrics import ClassificationMetrics
from clinrisk.model import SUMMARY_FILE, RiskModel
from clinrisk.registry import ARTIFACT_PREFIX_TAG, CHECKSUM_TAG, GATE_REASONS_TAG, GATE_TAG, Registry
from clinrisk.schema import TARGET
from clinrisk.training import TrainingSummary

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
MODEL_NAME_IN_RUN = "model"
SHAP_SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class Candidate:
    """What the evaluate stage knows about the model it is recording."""

    run_name: str
    model_dir: Path
    artifact_prefix: str
    checksum: str
    summary: TrainingSummary
    report: EvaluationReport
    scored: ScoredTestSet
    trigger: str


def _metric_dict(prefix: str, metrics: ClassificationMetrics | None) -> dict[str, float]:
    if metrics is None:
        return {}
    flat = metrics.model_dump(exclude={"at_threshold"})
    flat.update({f"threshold_{k}": v for k, v in metrics.at_threshold.model_dump().items()})
    return {f"{prefix}_{k}": float(v) for k, v in flat.items() if v is not None}


def _params(candidate: Candidate) -> dict[str, Any]:
    summary = candidate.summary
    return {
        **summary.hyperparameters.model_dump(),
        "scale_pos_weight_used": round(summary.scale_pos_weight_used, 4),
        "best_iteration": summary.best_iteration,
        "calibration": summary.calibration.chosen,
        "train_rows": summary.train_rows,
        "validation_rows": summary.validation_rows,
        "test_rows": candidate.report.candidate.n,
        "operating_threshold": candidate.report.operating_threshold,
        "trigger": candidate.trigger,
    }


def _metrics(candidate: Candidate) -> dict[str, float]:
    report, summary = candidate.report, candidate.summary
    metrics = {
        "validation_roc_auc": summary.validation.roc_auc,
        "validation_brier": summary.validation.brier,
        "validation_logistic_roc_auc": summary.validation.logistic_roc_auc,
        "training_seconds": summary.seconds,
        **_metric_dict("test", report.candidate),
        **_metric_dict("baseline_test", report.logistic_baseline),
        **_metric_dict("champion_test", report.champion),
        "gate_passed": float(report.gate.passed),
    }
    metrics.update({f"subgroup_auc_gap_{k}": v for k, v in report.subgroup_auc_gaps.items() if v is not None})
    return metrics


def _plots(candidate: Candidate, directory: Path) -> list[Path]:
    from clinrisk.plots import calibration_png, pr_curve_png, roc_curve_png

    scored = candidate.scored
    labels = scored.test.labels
    return [
        roc_curve_png(labels, scored.candidate, directory / "roc_curve.png", baseline_score=scored.logistic),
        pr_curve_png(labels, scored.candidate, directory / "pr_curve.png", baseline_score=scored.logistic),
        calibration_png(labels, scored.candidate, directory / "calibration.png"),
        shap_summary_png(candidate, directory / "shap_summary.png"),
    ]


def shap_summary_png(candidate: Candidate, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    features = candidate.scored.test.features
    sample = features.sample(min(SHAP_SAMPLE_ROWS, len(features)), random_state=0)
    explainer = shap.TreeExplainer(RiskModel.load(candidate.model_dir).booster)
    values = explainer.shap_values(sample)
    shap.summary_plot(values, sample, show=False, max_display=15)
    figure = plt.gcf()
    figure.suptitle("SHAP summary (log-odds contribution, before calibration)", fontsize=10)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def model_card(candidate: Candidate, version_hint: str) -> str:
    report, summary = candidate.report, candidate.summary
    c = report.candidate
    lines = [
        f"# Model card: {version_hint}",
        "",
        "**Task:** probability that a diabetic inpatient is readmitted within 30 days of discharge.",
        "**Population:** encounters in the UCI Diabetes 130-US hospitals schema; encounters ending in death"
        " or hospice are excluded. Test patients never appear in training or validation.",
        f"**Algorithm:** XGBoost ({summary.best_iteration + 1} trees), calibration `{summary.calibration.chosen}`.",
        "",
        "| metric | candidate | logistic baseline | champion |",
        "|---|---|---|---|",
    ]
    champion = report.champion
    for key in ("roc_auc", "pr_auc", "brier", "ece"):
        champion_value = f"{getattr(champion, key):.4f}" if champion else "—"
        lines.append(
            f"| {key} | {getattr(c, key):.4f} | {getattr(report.logistic_baseline, key):.4f} | {champion_value} |"
        )
    t = c.at_threshold
    lines += [
        "",
        f"ROC-AUC 95% CI (patient bootstrap): {c.roc_auc_ci_low} – {c.roc_auc_ci_high}.",
        f"At threshold {t.threshold}: sensitivity {t.sensitivity:.3f}, specificity {t.specificity:.3f}, "
        f"PPV {t.ppv:.3f}, F1 {t.f1:.3f}, flagged {t.flagged_rate:.1%}.",
        "",
        f"**Gate:** {'passed' if report.gate.passed else 'rejected'}.",
        *[f"- {reason}" for reason in report.gate.reasons],
        "",
        "**Limits:** trained on 1999–2008 US hospital data; not validated prospectively; subgroup metrics"
        " are in `evaluation.json`. A decision-support score, not a diagnosis.",
    ]
    return "\n".join(lines) + "\n"


def _log_model(candidate: Candidate) -> Any:
    import pandas as pd

    example = candidate.scored.test.encounters.drop(columns=[TARGET]).head(5)
    output = pd.DataFrame({"probability": candidate.scored.candidate[:5]})
    package_dir = Path(__file__).resolve().parent
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values; ours never do (the
        # schema makes every integer column required).
        warnings.filterwarnings("ignore", message=".*integer column.*", category=UserWarning)
        return _log_pyfunc(candidate, example, output, package_dir)


def _log_pyfunc(candidate: Candidate, example: Any, output: Any, package_dir: Path) -> Any:
    import mlflow
    import pandas as pd
    import xgboost
    from mlflow.models import infer_signature

    from clinrisk import mlflow_model

    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN,
        python_model=mlflow_model.__file__,
        artifacts={mlflow_model.MODEL_DIR_ARTIFACT: str(candidate.model_dir)},
        code_paths=[str(package_dir)],
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=[
            f"xgboost-cpu=={xgboost.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
            "pydantic>=2.7,<3",
        ],
    )


def record_candidate(registry: Registry, experiment_name: str, artifact_root: str, candidate: Candidate) -> int:
    """Log the run and register the model; returns the new version number."""
    with tracking_at(registry.tracking_uri):
        return _record(registry, experiment_name, artifact_root, candidate)


@contextmanager
def tracking_at(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for the block only. `mlflow.set_tracking_uri` also
    exports MLFLOW_TRACKING_URI to the process environment; left behind, it would send every
    later registry in this process (and its subprocesses) to this store."""
    import mlflow

    previous = os.environ.get(TRACKING_URI_VARIABLE)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it: mlflow handles it


def _record(registry: Registry, experiment_name: str, artifact_root: str, candidate: Candidate) -> int:
    import mlflow

    with registry.locked():
        experiment = mlflow.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else mlflow.create_experiment(experiment_name, artifact_location=artifact_root)
        )
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=candidate.run_name) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params(_params(candidate))
        mlflow.log_metrics(_metrics(candidate))
        for plot in _plots(candidate, Path(tmp)):
            mlflow.log_artifact(str(plot), artifact_path="plots")
        mlflow.log_dict(json.loads(candidate.report.model_dump_json()), "evaluation.json")
        mlflow.log_artifact(str(candidate.model_dir / SUMMARY_FILE))
        mlflow.log_text(model_card(candidate, candidate.run_name), "model_card.md")
        info = _log_model(candidate)
        run_id = run.info.run_id
    gate = candidate.report.gate
    return registry.register(
        info.model_uri,
        run_id,
        tags={
            ARTIFACT_PREFIX_TAG: candidate.artifact_prefix,
            CHECKSUM_TAG: candidate.checksum,
            GATE_TAG: "passed" if gate.passed else "rejected",
            GATE_REASONS_TAG: json.dumps(gate.reasons)[:5000],
            "trigger": candidate.trigger,
        },
    )
