"""MLflow tracking of a candidate: one run with params, metrics, plots, the evaluation report,
a model card and the pyfunc model, registered as a new version with alias `challenger`.

This runs in the evaluate Lambda, whose bundle holds mlflow-skinny (plus sagemaker-mlflow) and
no xgboost, scikit-learn, scipy, shap or matplotlib. So nothing here needs them: the pyfunc
model scores with `clinrisk.model.tree_ensemble`, and the plots are made only where their libraries
are installed. Without matplotlib (the Lambda) the run has no `plots/` folder, and its
`plots_skipped` tag names the plots left out and why; a local run has them all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrisk.data.task_binding import resolve_task
from clinrisk.data.task_port import DEFAULT_TASK, Task
from clinrisk.evaluation.evaluate import EvaluationReport, ScoredTestSet
from clinrisk.evaluation.metrics import ClassificationMetrics
from clinrisk.model.risk_model import SUMMARY_FILE, RiskModel
from clinrisk.model.training import TrainingSummary
from clinrisk.registry.model_registry import ARTIFACT_PREFIX_TAG, CHECKSUM_TAG, GATE_REASONS_TAG, GATE_TAG, Registry
from clinrisk.tasks.readmission.schema import COLUMNS, TARGET, ColumnKind
from clinrisk.taskspec.spec import CategoricalColumn, IdentifierColumn, TaskSpec

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
    task: Task = field(default_factory=resolve_task)
    lineage: dict[str, str] = field(default_factory=dict)  # clinrisk.pipeline.lineage.Lineage.tags()


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
        **candidate.lineage,
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


# Each plot and the libraries drawing it needs (clinrisk.evaluation.plots draws ROC and PR curves with
# scikit-learn; the SHAP summary is shap's beeswarm plot).
_PLOT_LIBRARIES: dict[str, tuple[str, ...]] = {
    "roc_curve": ("matplotlib", "sklearn"),
    "pr_curve": ("matplotlib", "sklearn"),
    "calibration": ("matplotlib",),
    "shap_summary": ("matplotlib", "shap"),
}


def missing_libraries(plot: str) -> list[str]:
    """The libraries `plot` needs that this environment lacks (none: the plot can be drawn)."""
    return [name for name in _PLOT_LIBRARIES[plot] if importlib.util.find_spec(name) is None]


def _plots(candidate: Candidate, directory: Path) -> tuple[list[Path], dict[str, list[str]]]:
    """The plots this environment can draw, and for each one it cannot, the missing libraries."""
    from clinrisk.evaluation.plots import calibration_png, pr_curve_png, roc_curve_png

    scored = candidate.scored
    labels = scored.test.labels
    makers = {
        "roc_curve": lambda path: roc_curve_png(labels, scored.candidate, path, baseline_score=scored.logistic),
        "pr_curve": lambda path: pr_curve_png(labels, scored.candidate, path, baseline_score=scored.logistic),
        "calibration": lambda path: calibration_png(labels, scored.candidate, path),
        "shap_summary": lambda path: shap_summary_png(candidate, path),
    }
    drawn: list[Path] = []
    skipped: dict[str, list[str]] = {}
    for name, make in makers.items():
        if missing := missing_libraries(name):
            skipped[name] = missing
        else:
            drawn.append(make(directory / f"{name}.png"))
    return drawn, skipped


def shap_summary_png(candidate: Candidate, path: Path) -> Path:
    """shap's beeswarm of exact TreeSHAP values, which `clinrisk.model.tree_ensemble` computes (the
    same values serving explains with), so no xgboost is needed to draw it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    features = candidate.scored.test.features
    sample = features.sample(min(SHAP_SAMPLE_ROWS, len(features)), random_state=0)
    model = RiskModel.load(candidate.model_dir, candidate.task.feature_schema)
    values = model.ensemble.contributions(sample[model.schema.names].to_numpy(dtype=np.float64))[:, :-1]
    shap.summary_plot(values, sample, show=False, max_display=15)
    figure = plt.gcf()
    figure.suptitle("SHAP summary (log-odds contribution, before calibration)", fontsize=10)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def model_card(candidate: Candidate, version_hint: str) -> str:
    report, summary = candidate.report, candidate.summary
    c = report.candidate
    card = candidate.task.card
    lines = [
        f"# Model card: {version_hint}",
        "",
        f"**Task:** {card.task}",
        f"**Intended use:** {card.intended_use}",  # also returned with every explanation
        f"**Population:** {card.population}",
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
        f"**Limits:** {card.limitations}",
    ]
    return "\n".join(lines) + "\n"


def _log_model(candidate: Candidate) -> Any:
    """Every task's model as the pyfunc of `clinrisk.model.mlflow_flavour`: readmission's encounters
    in, or (any other task) the records of its task file, logged with it."""
    from clinrisk.model.mlflow_flavour import TASK_FILE_ARTIFACT

    if candidate.task.name == DEFAULT_TASK:
        example = candidate.task.input_example(candidate.scored.test.rows)
        signature, artifacts = model_signature(), {}
    else:
        spec = candidate.task.source.spec
        inputs = [column.name for column in spec.columns if column.name != spec.target.column]
        example = candidate.scored.test.rows[inputs].head(5)
        signature, artifacts = task_signature(spec), {TASK_FILE_ARTIFACT: str(candidate.task.source.path)}
    package_dir = Path(__file__).resolve().parents[1]  # the clinrisk package
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values; ours never do (the
        # schema makes every integer column required).
        warnings.filterwarnings("ignore", message=".*integer column.*", category=UserWarning)
        return _log_pyfunc(candidate, example, package_dir, signature, artifacts)


# The MLflow type of each kind of UCI column (text columns hold None where a value is missing).
_MLFLOW_TYPES: dict[ColumnKind, str] = {
    ColumnKind.IDENTIFIER: "long",
    ColumnKind.INTEGER: "long",
    ColumnKind.CODE: "long",
    ColumnKind.CATEGORY: "string",
    ColumnKind.ICD9: "string",
    ColumnKind.TEXT: "string",
}


def model_signature() -> Any:
    """The pyfunc's signature, written from clinrisk.tasks.readmission.schema rather than inferred from example
    rows: MLflow's inference imports scipy, which the evaluate Lambda does not have, and a few
    rows cannot show that a mostly empty column holds text."""
    from mlflow.types.schema import ColSpec, TensorSpec

    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(_MLFLOW_TYPES[spec.kind], spec.name) for spec in COLUMNS if spec.name != TARGET
    ]
    return _probability_signature(inputs)


def task_signature(spec: TaskSpec) -> Any:
    """A task's pyfunc signature, from its task file: its declared columns but the target, typed as
    the task's typed frame holds them (codes and identifiers as text, numbers and booleans as doubles,
    so a missing value is None or NaN)."""
    from mlflow.types.schema import ColSpec, TensorSpec

    text = (CategoricalColumn, IdentifierColumn)
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("string" if isinstance(column, text) else "double", column.name)
        for column in spec.columns
        if column.name != spec.target.column
    ]
    return _probability_signature(inputs)


def _probability_signature(inputs: list[Any]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from clinrisk.model.mlflow_flavour import PROBABILITY_COLUMN

    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", PROBABILITY_COLUMN)]))


def _log_pyfunc(
    candidate: Candidate, example: Any, package_dir: Path, signature: Any, artifacts: dict[str, str]
) -> Any:
    import mlflow
    import pandas as pd

    from clinrisk.model import mlflow_flavour as mlflow_model

    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN,
        python_model=mlflow_model.__file__,
        artifacts={mlflow_model.MODEL_DIR_ARTIFACT: str(candidate.model_dir), **artifacts},
        code_paths=[str(package_dir)],
        signature=signature,
        input_example=example,
        # What the model's code imports: it scores with clinrisk.model.tree_ensemble, not xgboost.
        pip_requirements=[
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
            "pydantic>=2.7,<3",
        ],
    )


def record_candidate(registry: Registry, experiment_name: str, artifact_root: str | None, candidate: Candidate) -> int:
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


def _record(registry: Registry, experiment_name: str, artifact_root: str | None, candidate: Candidate) -> int:
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
        mlflow.set_tags(candidate.lineage)
        mlflow.log_metrics(_metrics(candidate))
        plots, skipped = _plots(candidate, Path(tmp))
        for plot in plots:
            mlflow.log_artifact(str(plot), artifact_path="plots")
        if skipped:
            mlflow.set_tag("plots_skipped", "; ".join(f"{n}: no {', '.join(libs)}" for n, libs in skipped.items()))
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
            **candidate.lineage,
        },
    )
