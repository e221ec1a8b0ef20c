"""Training: XGBoost with early stopping, class weighting and a chosen calibration, plus a
logistic-regression baseline and the training-baseline statistics for later drift checks.
The calibration is fitted on cross-fitted training scores, never on the early-stopping rows.

`sagemaker_jobs/train.py` is the thin script-mode entry point around `train_model`.

xgboost and scikit-learn are imported inside the functions that fit: the evaluate Lambda, which
has neither, imports this module for `TrainingSummary`. Scores come from `RiskModel` (numpy),
the same scorer evaluation and serving use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from clinrisk.data.baseline import TrainingBaseline, training_baseline
from clinrisk.data.task_binding import resolve_task
from clinrisk.data.task_port import Examples, Task
from clinrisk.errors import ClinriskError
from clinrisk.evaluation.metrics import roc_auc
from clinrisk.model.calibration import CalibrationChoice, choose_calibrator, out_of_fold_scores
from clinrisk.model.risk_model import (
    BASELINE_FILE,
    BOOSTER_FILE,
    CALIBRATOR_FILE,
    FEATURE_SCHEMA_FILE,
    LOGISTIC_FILE,
    SUMMARY_FILE,
    Calibrator,
    LogisticBaseline,
    RiskModel,
    sigmoid,
    write_json,
)

if TYPE_CHECKING:
    from clinrisk.tasks.readmission.features import FeatureSchema
    from clinrisk.taskspec.spec import TrainingOverrides


CALIBRATION_FOLDS = 5


class TrainingError(ClinriskError):
    """Training cannot start or produce a model (for example: a channel without both classes)."""


class Hyperparameters(BaseModel):
    """XGBoost settings. The defaults were chosen on the UCI data (see docs/model-and-data.md)."""

    eta: float = Field(0.03, gt=0, le=1)
    max_depth: int = Field(6, ge=1, le=16)
    min_child_weight: float = Field(50.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.7, gt=0, le=1)
    reg_lambda: float = Field(5.0, ge=0)
    num_round: int = Field(3000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    scale_pos_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "Weight of the positive (readmitted) class. 0 = choose: train unweighted and with"
            " sqrt(negatives/positives), keep the one with the better validation AUC. Weighting gives"
            " the rare class more gradient, which helps on some data and hurts on other (on the UCI"
            " file it cost 0.008 AUC); the calibrator restores probabilities either way."
        ),
    )
    seed: int = 42
    nthread: int = Field(0, ge=0, description="0 = all cores")

    @classmethod
    def for_task(cls, overrides: TrainingOverrides) -> Hyperparameters:
        """These defaults, with what a task file's `training:` section sets."""
        return cls(**overrides.given())


class ValidationScores(BaseModel):
    roc_auc: float
    brier: float
    logistic_roc_auc: float


class TrainingSummary(BaseModel):
    hyperparameters: Hyperparameters
    scale_pos_weight_used: float
    weighting_validation_auc: dict[str, float] = Field(
        description="Validation AUC of each class weighting tried (raw booster scores)."
    )
    best_iteration: int
    train_rows: int
    validation_rows: int
    excluded_death_or_hospice: int
    validation: ValidationScores
    calibration: CalibrationChoice
    seconds: float


@dataclass
class TrainedModel:
    booster: object  # xgboost.Booster
    calibrator: Calibrator
    logistic: LogisticBaseline
    baseline: TrainingBaseline
    summary: TrainingSummary
    schema: FeatureSchema

    def risk_model(self) -> RiskModel:
        """The trained model as evaluation and serving score it (no xgboost needed)."""
        return RiskModel.from_booster(self.booster, self.calibrator, self.schema)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))  # type: ignore[attr-defined]
        write_json(directory / CALIBRATOR_FILE, self.calibrator)
        write_json(directory / FEATURE_SCHEMA_FILE, self.schema)
        write_json(directory / LOGISTIC_FILE, self.logistic)
        write_json(directory / BASELINE_FILE, self.baseline)
        write_json(directory / SUMMARY_FILE, self.summary)


@dataclass(frozen=True)
class LearningSet:
    """Features, labels and patient ids of the rows a model may learn from."""

    features: pd.DataFrame
    labels: np.ndarray
    patients: np.ndarray
    excluded: int

    @classmethod
    def from_examples(cls, examples: Examples, channel: str) -> LearningSet:
        labels = examples.labels
        if labels.size == 0 or labels.min() == labels.max():
            raise TrainingError(f"the {channel} channel needs records of both outcomes")
        return cls(features=examples.features, labels=labels, patients=examples.groups, excluded=examples.excluded)


def fit_logistic_baseline(train: LearningSet) -> LogisticBaseline:
    from sklearn.linear_model import LogisticRegression

    x = train.features.to_numpy(dtype=float)
    means = np.nanmean(x, axis=0)
    means = np.where(np.isnan(means), 0.0, means)
    x = np.where(np.isnan(x), means, x)
    scales = x.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    fit = LogisticRegression(C=0.1, max_iter=2000).fit((x - means) / scales, train.labels)
    return LogisticBaseline(
        features=list(train.features.columns),
        means=means.tolist(),
        scales=scales.tolist(),
        coefficients=fit.coef_[0].tolist(),
        intercept=float(fit.intercept_[0]),
    )


def xgboost_params(hp: Hyperparameters, weight: float) -> dict[str, object]:
    """XGBoost's parameters for these settings (the number of rounds is `hp.num_round`, given apart)."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "eta": hp.eta,
        "max_depth": hp.max_depth,
        "min_child_weight": hp.min_child_weight,
        "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree,
        "lambda": hp.reg_lambda,
        "scale_pos_weight": weight,
        "seed": hp.seed,
        "nthread": hp.nthread,
    }


def _fit_booster(train: LearningSet, validation: LearningSet, hp: Hyperparameters, weight: float) -> object:
    import xgboost as xgb

    params = xgboost_params(hp, weight)
    names = list(train.features.columns)
    dtrain = xgb.DMatrix(train.features, label=train.labels, feature_names=names)
    dvalid = xgb.DMatrix(validation.features, label=validation.labels, feature_names=names)
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=hp.num_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=hp.early_stopping_rounds,
        verbose_eval=False,
    )
    # Keep only the trees up to the best iteration, so every consumer scores the same model.
    return booster[: booster.best_iteration + 1]


def _raw_scores(booster: object, features: pd.DataFrame) -> np.ndarray:
    return sigmoid(RiskModel.from_booster(booster).ensemble.margins(features.to_numpy(dtype=np.float64)))


def _weightings(train: LearningSet, hp: Hyperparameters) -> list[float]:
    if hp.scale_pos_weight:
        return [hp.scale_pos_weight]
    positives = float(train.labels.sum())
    return [1.0, float(np.sqrt((train.labels.size - positives) / positives))]


@dataclass(frozen=True)
class _Fitted:
    booster: object
    raw: np.ndarray  # its raw probabilities on the validation rows
    auc: float


def _best_booster(
    train: LearningSet, validation: LearningSet, hp: Hyperparameters
) -> tuple[_Fitted, float, dict[str, float]]:
    """Fit one booster per class weighting; keep the best by validation AUC."""
    fitted: dict[float, _Fitted] = {}
    for weight in _weightings(train, hp):
        booster = _fit_booster(train, validation, hp, weight)
        raw = _raw_scores(booster, validation.features)
        fitted[weight] = _Fitted(booster=booster, raw=raw, auc=roc_auc(validation.labels, raw))
    best = max(fitted, key=lambda w: fitted[w].auc)
    return fitted[best], best, {f"{w:.3f}": f.auc for w, f in fitted.items()}


def _cross_fitted_raw(train: LearningSet, hp: Hyperparameters, weight: float, rounds: int) -> np.ndarray:
    """What the calibration is fitted on: each training row's raw probability from a booster with
    the chosen weighting and tree count, fitted on the other folds' patients. The validation rows
    already chose the tree count and the weighting; a calibration fitted on them too was
    over-confident on new patients (slope 0.93 on a fresh synthetic cohort, against 1.00 this way).
    """
    import xgboost as xgb

    params = xgboost_params(hp, weight)
    names = list(train.features.columns)

    def fit_and_score(fit: np.ndarray, score: np.ndarray) -> np.ndarray:
        dtrain = xgb.DMatrix(train.features[fit], label=train.labels[fit], feature_names=names)
        return _raw_scores(xgb.train(params, dtrain, num_boost_round=rounds), train.features[score])

    return out_of_fold_scores(train.patients, CALIBRATION_FOLDS, hp.seed, fit_and_score)


def train_model(
    train_frame: pd.DataFrame, validation_frame: pd.DataFrame, hp: Hyperparameters, task: Task | None = None
) -> TrainedModel:
    """Train on frames of the task (readmission's canonical encounters by default) whose patients
    (groups) do not overlap."""
    started = time.perf_counter()
    task = task or resolve_task()
    train = LearningSet.from_examples(task.examples(train_frame), "train")
    validation = LearningSet.from_examples(task.examples(validation_frame), "validation")
    overlap = np.intersect1d(np.unique(train.patients), np.unique(validation.patients))
    if overlap.size:
        raise TrainingError(f"{overlap.size} patients appear in both the train and validation channels")
    best, weight, weighting_auc = _best_booster(train, validation, hp)
    booster, raw = best.booster, best.raw
    rounds = int(booster.num_boosted_rounds())  # type: ignore[attr-defined]
    cross_fitted = _cross_fitted_raw(train, hp, weight, rounds)
    calibrator, choice = choose_calibrator(cross_fitted, train.labels, train.patients, hp.seed)
    calibrated = calibrator.apply(raw)
    logistic = fit_logistic_baseline(train)
    summary = TrainingSummary(
        hyperparameters=hp,
        scale_pos_weight_used=weight,
        weighting_validation_auc=weighting_auc,
        best_iteration=int(booster.num_boosted_rounds()) - 1,  # type: ignore[attr-defined]
        train_rows=len(train.labels),
        validation_rows=len(validation.labels),
        excluded_death_or_hospice=train.excluded + validation.excluded,
        validation=ValidationScores(
            roc_auc=roc_auc(validation.labels, calibrated),
            brier=float(np.mean((calibrated - validation.labels) ** 2)),
            logistic_roc_auc=roc_auc(validation.labels, logistic.predict(validation.features)),
        ),
        calibration=choice,
        seconds=time.perf_counter() - started,
    )
    return TrainedModel(
        booster=booster,
        calibrator=calibrator,
        logistic=logistic,
        baseline=training_baseline(train.features, calibrated),
        summary=summary,
        schema=task.feature_schema,
    )
