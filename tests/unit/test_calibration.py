from __future__ import annotations

import numpy as np

from clinrisk.model.calibration import choose_calibrator, fit_calibrator, out_of_fold_scores, patient_folds
from clinrisk.model.risk_model import Calibrator, sigmoid


def _cohort(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = sigmoid(rng.normal(-2.2, 0.8, n))
    labels = (rng.random(n) < truth).astype(int)
    patients = rng.integers(0, n // 2, n)
    return truth, labels, patients


def test_inflated_scores_get_a_calibration_that_fixes_them() -> None:
    truth, labels, patients = _cohort()
    inflated = sigmoid(np.log(truth / (1 - truth)) + 1.2)  # what class weighting does
    calibrator, choice = choose_calibrator(inflated, labels, patients, seed=1)
    assert choice.chosen in {"platt", "isotonic"}
    assert choice.brier[choice.chosen] < choice.brier["none"]
    assert choice.ece[choice.chosen] < choice.ece["none"]
    assert abs(calibrator.apply(inflated).mean() - labels.mean()) < 0.01


def test_calibrated_scores_are_left_alone() -> None:
    truth, labels, patients = _cohort()
    calibrator, choice = choose_calibrator(truth, labels, patients, seed=1)
    assert choice.chosen == "none"
    np.testing.assert_array_equal(calibrator.apply(truth), truth)


def test_platt_and_isotonic_are_plain_data_that_round_trip() -> None:
    truth, labels, _ = _cohort(5000)
    for kind in ("platt", "isotonic"):
        calibrator = fit_calibrator(kind, truth, labels)
        again = Calibrator.model_validate_json(calibrator.model_dump_json())
        np.testing.assert_allclose(again.apply(truth), calibrator.apply(truth))
        assert np.all(np.diff(again.apply(np.linspace(0.01, 0.99, 50))) >= 0), "calibration must be monotone"


def test_patient_folds_keep_every_patient_in_one_fold() -> None:
    _, _, patients = _cohort(5000)

    fold = patient_folds(patients, 5, seed=3)

    assert set(np.unique(fold)) == {0, 1, 2, 3, 4}
    for patient in np.unique(patients):
        assert np.unique(fold[patients == patient]).size == 1


def test_out_of_fold_scores_come_from_models_that_never_saw_the_patient() -> None:
    _, _, patients = _cohort(3000)
    times_scored = np.zeros(patients.size, dtype=int)

    def fit_and_score(fit: np.ndarray, score: np.ndarray) -> np.ndarray:
        assert not fit[score].any(), "a row is scored by a model fitted on it"
        assert np.intersect1d(patients[fit], patients[score]).size == 0, "a patient on both sides"
        times_scored[score] += 1
        return np.flatnonzero(score).astype(float)  # each row's own index, to check where scores land

    scores = out_of_fold_scores(patients, 5, seed=3, fit_and_score=fit_and_score)

    assert np.all(times_scored == 1)
    np.testing.assert_array_equal(scores, np.arange(patients.size))
