from __future__ import annotations

import numpy as np

from clinrisk.model.calibration import choose_calibrator, fit_calibrator
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
