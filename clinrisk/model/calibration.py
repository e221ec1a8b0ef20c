"""Choosing a probability calibration honestly.

The booster is trained with class weights, which inflates its probabilities, so a calibration
usually helps; but "usually" is not "always". Each candidate (none, Platt, isotonic) is
cross-fitted on the calibration rows in two patient-grouped halves: fit on one half, score the
other, and the reverse. A calibration is kept only if these out-of-fold scores beat the raw
probabilities on both Brier score and ECE; the winner is then refitted on all calibration rows.

The calibration rows are the training rows, each scored by a booster that never saw its patient
(`out_of_fold_scores`), not the validation rows: those chose the booster's tree count and class
weighting, and a calibration fitted on them too came out over-confident.

scikit-learn fits the calibrators here, at training time only: it is imported inside
`fit_calibrator`, because the evaluate Lambda imports this module (through
`clinrisk.model.training.TrainingSummary`) and its bundle has no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from clinrisk.evaluation.metrics import expected_calibration_error
from clinrisk.model.risk_model import Calibrator, logit

CANDIDATES: tuple[str, ...] = ("none", "platt", "isotonic")


class CalibrationChoice(BaseModel):
    chosen: str
    brier: dict[str, float]
    ece: dict[str, float]
    rows: int | None = None  # the rows it was chosen and fitted on (None in summaries written before)


def fit_calibrator(kind: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if kind == "platt":
        fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit(raw).reshape(-1, 1), y)
        return Calibrator(kind="platt", slope=float(fit.coef_[0, 0]), intercept=float(fit.intercept_[0]))
    if kind == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator(
            kind="isotonic",
            knots_x=[float(v) for v in iso.X_thresholds_],
            knots_y=[float(v) for v in iso.y_thresholds_],
        )
    return Calibrator(kind="none")


def _out_of_fold(kind: str, raw: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    scores = np.empty_like(raw)
    for held_out in (0, 1):
        train = fold != held_out
        scores[~train] = fit_calibrator(kind, raw[train], y[train]).apply(raw[~train])
    return scores


def patient_folds(patients: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0 .. folds-1), drawn per patient: all rows of a patient share one fold."""
    unique_patients = np.unique(patients)
    fold_of_patient = np.random.default_rng(seed).permutation(len(unique_patients)) % folds
    return fold_of_patient[np.searchsorted(unique_patients, patients)]


def out_of_fold_scores(
    patients: np.ndarray, folds: int, seed: int, fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Every row scored once, by a model that never saw its patient: `fit_and_score(fit, score)`
    fits on the rows of the boolean mask `fit` and returns the scores of the rows of `score`."""
    fold = patient_folds(patients, folds, seed)
    scores = np.empty(patients.size)
    for held_out in range(folds):
        scored = fold == held_out
        scores[scored] = fit_and_score(~scored, scored)
    return scores


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, patients: np.ndarray, seed: int
) -> tuple[Calibrator, CalibrationChoice]:
    """Pick the calibration that improves both Brier and ECE out of fold, and fit it on all rows."""
    fold = patient_folds(patients, 2, seed)
    brier: dict[str, float] = {}
    ece: dict[str, float] = {}
    for kind in CANDIDATES:
        scores = _out_of_fold(kind, raw, y, fold)
        brier[kind] = float(np.mean((scores - y) ** 2))
        ece[kind] = expected_calibration_error(y, scores)
    improving = [k for k in CANDIDATES[1:] if brier[k] < brier["none"] and ece[k] < ece["none"]]
    chosen = min(improving, key=lambda k: brier[k]) if improving else "none"
    return fit_calibrator(chosen, raw, y), CalibrationChoice(chosen=chosen, brier=brier, ece=ece, rows=int(y.size))
