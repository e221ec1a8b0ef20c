"""Metrics: calibration, the grouped bootstrap, operating-point and subgroup metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from clinrisk.evaluation import metrics
from clinrisk.evaluation.metrics import (
    ClassificationMetrics,
    SubgroupMetrics,
    calibration_bins,
    classification_report,
    equal_frequency_bins,
    expected_calibration_error,
    grouped_bootstrap_auc_ci,
    grouped_bootstrap_aucs,
    max_subgroup_auc_gap,
    patient_multiplicities,
    subgroup_report,
    threshold_metrics,
    weighted_roc_auc,
)


def _synthetic(
    n: int, seed: int, patients: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Skewed, informative scores (~11% prevalence) like readmission risk, with patient ids."""
    rng = np.random.default_rng(seed)
    y = rng.binomial(1, 0.11, n).astype(np.int64)
    score = np.clip(rng.beta(1.2, 8.0, n) + 0.08 * y, 0.0, 1.0)
    groups = rng.integers(0, patients or n, n).astype(np.int64)
    return y, score, groups


# --------------------------------------------------------------------------- ECE


def test_ece_is_zero_when_every_bin_is_calibrated() -> None:
    # Ten score levels of 100 rows each; level p has exactly 100·p positives.
    levels = np.arange(0.05, 1.0, 0.1)
    score = np.repeat(levels, 100)
    y = np.concatenate([np.r_[np.ones(round(p * 100)), np.zeros(100 - round(p * 100))] for p in levels])
    assert expected_calibration_error(y.astype(int), score) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_value_on_a_hand_made_case() -> None:
    # Two bins: {0.1, 0.1} observed 0 → |0.1−0| ; {0.3, 0.3} observed 1 → |0.3−1|; equal weights.
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.1, 0.3, 0.3])
    assert expected_calibration_error(y, score, bins=2) == pytest.approx(0.5 * 0.1 + 0.5 * 0.7)


def test_ece_weights_bins_by_their_size() -> None:
    # Three rows at 0.2 (observed 1/3) and one at 0.9 (observed 0): quartile edges collapse to 2 bins.
    y = np.array([1, 0, 0, 0])
    score = np.array([0.2, 0.2, 0.2, 0.9])
    expected = 0.75 * abs(0.2 - 1 / 3) + 0.25 * abs(0.9 - 0.0)
    assert expected_calibration_error(y, score, bins=4) == pytest.approx(expected)


def test_ece_with_all_scores_tied_uses_one_bin() -> None:
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    score = np.full(10, 0.2)
    _, n_bins = equal_frequency_bins(score, 10)
    assert n_bins == 1
    assert expected_calibration_error(y, score) == pytest.approx(0.3)


def test_ece_is_large_for_a_miscalibrated_score() -> None:
    y, score, _ = _synthetic(5000, seed=1)
    calibrated_ish = expected_calibration_error(y, score)
    inflated = expected_calibration_error(y, np.clip(score + 0.4, 0.0, 1.0))
    assert inflated > 0.3
    assert inflated > 5 * calibrated_ish


def test_equal_frequency_bins_hold_equal_counts_on_skewed_scores() -> None:
    _, score, _ = _synthetic(10_000, seed=2)
    bin_index, n_bins = equal_frequency_bins(score, 10)
    counts = np.bincount(bin_index, minlength=n_bins)
    assert n_bins == 10
    assert counts.min() >= 990 and counts.max() <= 1010
    # Equal-width bins would leave the upper bins almost empty on these scores.
    width_counts = np.histogram(score, bins=10, range=(0, 1))[0]
    assert width_counts[5:].sum() < 100


def test_tied_scores_share_a_bin() -> None:
    score = np.r_[np.zeros(50), np.full(30, 0.5), np.linspace(0.6, 1.0, 20)]
    bin_index, _ = equal_frequency_bins(score, 10)
    assert len(set(bin_index[:50])) == 1
    assert len(set(bin_index[50:80])) == 1


@pytest.mark.parametrize("seed", range(5))
def test_no_bin_is_empty_even_with_heavy_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    score = rng.choice([0.0, 0.05, 0.1, 0.5, 0.9], size=int(rng.integers(5, 60)), p=[0.5, 0.2, 0.1, 0.1, 0.1])
    bin_index, n_bins = equal_frequency_bins(score, 10)
    assert np.bincount(bin_index, minlength=n_bins).min() > 0
    # Equal scores never straddle bins.
    for value in np.unique(score):
        assert len(set(bin_index[score == value])) == 1


def test_calibration_bins_report_mean_predicted_observed_and_counts() -> None:
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.1, 0.3, 0.3])
    predicted, observed, counts = calibration_bins(y, score, bins=2)
    np.testing.assert_allclose(predicted, [0.1, 0.3])
    np.testing.assert_allclose(observed, [0.0, 1.0])
    np.testing.assert_array_equal(counts, [2, 2])


# --------------------------------------------------------------------------- weighted AUC, bootstrap


def test_weighted_auc_equals_sklearn_with_sample_weight() -> None:
    rng = np.random.default_rng(3)
    y, score, _ = _synthetic(3000, seed=3)
    score = np.round(score, 2)  # many ties, which the rank formula must count as one half
    weights = rng.integers(0, 4, size=(5, y.size)).astype(float)
    ours = weighted_roc_auc(y, score, weights)
    expected = [roc_auc_score(y, score, sample_weight=w) for w in weights]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert weighted_roc_auc(y, score, np.ones(y.size))[0] == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_weighted_auc_is_nan_without_both_classes() -> None:
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.4])
    result = weighted_roc_auc(y, score, np.array([[1, 1, 0, 0], [1, 0, 1, 0]]))
    assert np.isnan(result[0])
    assert result[1] == 1.0


def test_bootstrap_rounds_equal_sklearn_on_the_resampled_patients(monkeypatch: pytest.MonkeyPatch) -> None:
    y, score, groups = _synthetic(400, seed=4, patients=150)
    # Force several chunks so the chunked loop is exercised too.
    monkeypatch.setattr(metrics, "_BOOTSTRAP_CELLS_PER_CHUNK", 1500)
    aucs = grouped_bootstrap_aucs(y, score, groups, rounds=12, seed=9)
    _, codes = np.unique(groups, return_inverse=True)
    multiplicities = patient_multiplicities(int(codes.max()) + 1, rounds=12, seed=9)
    for auc, drawn in zip(aucs, multiplicities, strict=True):
        # Materialise the resample the slow way: each patient's rows repeated as often as drawn.
        rows = np.repeat(np.arange(y.size), drawn[codes])
        assert auc == pytest.approx(roc_auc_score(y[rows], score[rows]), abs=1e-12)


def test_patient_multiplicities_draw_every_patient_count_once_per_round() -> None:
    drawn = patient_multiplicities(500, rounds=20, seed=1)
    assert drawn.shape == (20, 500)
    np.testing.assert_array_equal(drawn.sum(axis=1), 500)
    # About 1 − 1/e of patients appear in a round.
    assert 0.55 < (drawn > 0).mean() < 0.70


def test_bootstrap_ci_contains_the_point_auc_and_is_reproducible() -> None:
    y, score, groups = _synthetic(4000, seed=5, patients=3000)
    low, high = grouped_bootstrap_auc_ci(y, score, groups, rounds=200, seed=1)
    assert low < roc_auc_score(y, score) < high
    assert (low, high) == grouped_bootstrap_auc_ci(y, score, groups, rounds=200, seed=1)
    assert (low, high) != grouped_bootstrap_auc_ci(y, score, groups, rounds=200, seed=2)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    small = _synthetic(1000, seed=6)
    large = _synthetic(20_000, seed=6)
    low_s, high_s = grouped_bootstrap_auc_ci(*small, rounds=200, seed=1)
    low_l, high_l = grouped_bootstrap_auc_ci(*large, rounds=200, seed=1)
    assert high_l - low_l < 0.5 * (high_s - low_s)


def test_bootstrap_ci_widens_when_rows_belong_to_the_same_patient() -> None:
    # Every patient contributes 5 identical encounters: resampling rows as if independent
    # understates the uncertainty; resampling patients does not.
    y, score, _ = _synthetic(1000, seed=7)
    y5, score5 = np.repeat(y, 5), np.repeat(score, 5)
    patient = np.repeat(np.arange(1000), 5)
    low_g, high_g = grouped_bootstrap_auc_ci(y5, score5, patient, rounds=300, seed=1)
    low_r, high_r = grouped_bootstrap_auc_ci(y5, score5, np.arange(5000), rounds=300, seed=1)
    assert high_g - low_g > 1.6 * (high_r - low_r)


def test_bootstrap_skips_rounds_without_both_classes() -> None:
    # One positive patient among 30: about a third of the resamples miss them.
    y = np.r_[1, np.zeros(29, dtype=int)]
    score = np.linspace(0.9, 0.1, 30)
    aucs = grouped_bootstrap_aucs(y, score, np.arange(30), rounds=100, seed=0)
    assert 10 < np.isnan(aucs).sum() < 60
    low, high = grouped_bootstrap_auc_ci(y, score, np.arange(30), rounds=100, seed=0)
    assert low == high == 1.0


def test_bootstrap_ci_is_nan_when_no_round_has_both_classes() -> None:
    low, high = grouped_bootstrap_auc_ci(np.zeros(10, dtype=int), np.linspace(0, 1, 10), np.arange(10))
    assert np.isnan(low) and np.isnan(high)


@pytest.mark.parametrize(
    ("y", "score", "groups", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], [1, 2, 3], "only 0 and 1"),
        ([0, 1], [0.1, 1.2], [1, 2], r"probabilities in \[0, 1\]"),
        ([0, 1], [0.1, float("nan")], [1, 2], r"probabilities in \[0, 1\]"),
        ([0, 1, 1], [0.1, 0.2], [1, 2, 3], "same length"),
        ([0, 1], [0.1, 0.2], [1, 2, 3], "groups must"),
        ([], [], [], "must not be empty"),
    ],
)
def test_bad_inputs_are_rejected_without_echoing_values(
    y: list[int], score: list[float], groups: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as error:
        grouped_bootstrap_auc_ci(y, score, groups, rounds=10)
    assert "0.2" not in str(error.value)


# --------------------------------------------------------------------------- operating point


def test_threshold_metrics_on_a_hand_built_confusion_matrix() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.5, 0.1, 0.7, 0.2, 0.3, 0.1, 0.05])
    # Flagged (score >= 0.5, inclusive): 0.9 (tp), 0.5 (tp), 0.7 (fp).
    result = threshold_metrics(y, score, 0.5)
    assert (result.tp, result.fp, result.tn, result.fn) == (2, 1, 4, 1)
    assert result.sensitivity == pytest.approx(2 / 3)
    assert result.specificity == pytest.approx(4 / 5)
    assert result.ppv == pytest.approx(2 / 3)
    assert result.npv == pytest.approx(4 / 5)
    assert result.f1 == pytest.approx(2 / 3)
    assert result.flagged_rate == pytest.approx(3 / 8)
    assert result.threshold == 0.5


def test_threshold_metrics_divide_by_zero_gives_zero_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = threshold_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4]), 0.9)
    assert (result.sensitivity, result.ppv, result.f1, result.flagged_rate) == (0.0, 0.0, 0.0, 0.0)
    assert result.specificity == 1.0
    assert result.npv == 1.0


# --------------------------------------------------------------------------- full report


def test_classification_report_fields_agree_with_their_definitions() -> None:
    y, score, groups = _synthetic(5000, seed=8, patients=3500)
    report = classification_report(y, score, groups, threshold=0.2, bootstrap_rounds=100, seed=3)
    assert report.n == 5000
    assert report.positives == int(y.sum())
    assert report.prevalence == pytest.approx(y.mean())
    assert report.roc_auc == pytest.approx(roc_auc_score(y, score))
    assert report.roc_auc_ci_low is not None and report.roc_auc_ci_high is not None
    assert report.roc_auc_ci_low < report.roc_auc < report.roc_auc_ci_high
    assert report.pr_auc == pytest.approx(average_precision_score(y, score))
    assert report.brier == pytest.approx(np.mean((score - y) ** 2))
    assert report.ece == pytest.approx(expected_calibration_error(y, score))
    assert report.at_threshold == threshold_metrics(y, score, 0.2)
    # JSON round trip, as MLflow and the gate's callers store it.
    assert ClassificationMetrics.model_validate(json.loads(report.model_dump_json())) == report


def test_classification_report_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        classification_report(np.zeros(5, dtype=int), np.full(5, 0.1), np.arange(5), threshold=0.5)


# --------------------------------------------------------------------------- subgroups


def _subgroup_data() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], dict[str, npt.ArrayLike]]:
    rng = np.random.default_rng(10)
    # A and B: 400 rows with 25% positives each; C: 50 rows; D: 300 rows, no positives;
    # and 30 rows with the value missing.
    race = np.array(["A"] * 400 + ["B"] * 400 + ["C"] * 50 + ["D"] * 300 + [None] * 30, dtype=object)
    y = np.r_[
        np.tile([1, 0, 0, 0], 100),
        np.tile([1, 0, 0, 0], 100),
        np.tile([1, 0], 25),
        np.zeros(300),
        np.tile([1, 0], 15),
    ]
    noise = rng.uniform(0, 1, y.size)
    # A's score separates well, B's much less, so their AUCs differ by a known wide margin.
    signal = np.where(race == "A", 0.5, 0.1)
    score = np.clip(0.3 * noise + signal * y, 0.0, 1.0)
    gender = np.where(rng.uniform(0, 1, y.size) < 0.5, "F", "M")
    return y.astype(np.int64), score, {"race": race, "gender": gender}


def test_subgroup_report_lists_every_level_with_unknown_for_missing() -> None:
    y, score, attributes = _subgroup_data()
    report = subgroup_report(y, score, attributes, threshold=0.3, min_size=200, min_positives=20)
    assert [(s.attribute, s.level) for s in report] == [
        ("race", "A"),
        ("race", "B"),
        ("race", "C"),
        ("race", "D"),
        ("race", "Unknown"),
        ("gender", "F"),
        ("gender", "M"),
    ]
    by_level = {s.level: s for s in report}
    assert (by_level["A"].n, by_level["A"].positives, by_level["A"].prevalence) == (400, 100, 0.25)
    assert by_level["Unknown"].n == 30
    rows = np.asarray(attributes["race"]) == "A"
    assert by_level["A"].roc_auc == pytest.approx(roc_auc_score(y[rows], score[rows]))
    assert by_level["A"].flagged_rate == pytest.approx(np.mean(score[rows] >= 0.3))
    assert by_level["A"].sensitivity == pytest.approx(np.mean(score[rows][y[rows] == 1] >= 0.3))


def test_subgroup_without_both_classes_has_no_auc_and_is_not_gated() -> None:
    y, score, attributes = _subgroup_data()
    report = subgroup_report(y, score, attributes, threshold=0.3, min_size=200, min_positives=20)
    d = next(s for s in report if s.level == "D")
    assert d.roc_auc is None
    assert d.sensitivity is None
    assert d.gated is False


def test_subgroup_gated_flags_follow_size_and_class_counts() -> None:
    y, score, attributes = _subgroup_data()
    report = subgroup_report(y, score, attributes, threshold=0.3, min_size=200, min_positives=20)
    gated = {s.level for s in report if s.gated}
    # C (50 rows) and Unknown (30) are too small; D has no positives.
    assert gated == {"A", "B", "F", "M"}
    # With 101 positives required, A and B (100 positives each) drop out too.
    strict = subgroup_report(y, score, attributes, threshold=0.3, min_size=200, min_positives=101)
    assert {s.level for s in strict if s.gated} == {"F", "M"}
    lenient = subgroup_report(y, score, attributes, threshold=0.3, min_size=10, min_positives=10)
    assert {s.level for s in lenient if s.gated} == {"A", "B", "C", "Unknown", "F", "M"}


def test_subgroup_with_too_few_negatives_is_not_gated() -> None:
    y = np.r_[np.ones(250, dtype=int), np.zeros(5, dtype=int)]
    score = np.linspace(0.0, 1.0, y.size)
    (only,) = subgroup_report(y, score, {"gender": ["F"] * y.size}, threshold=0.5, min_size=200, min_positives=20)
    assert only.roc_auc is not None
    assert only.gated is False


def test_max_subgroup_auc_gap_uses_only_gated_levels() -> None:
    y, score, attributes = _subgroup_data()
    report = subgroup_report(y, score, attributes, threshold=0.3, min_size=200, min_positives=20)
    auc = {s.level: s.roc_auc for s in report}
    gaps = max_subgroup_auc_gap(report)
    assert auc["A"] is not None and auc["B"] is not None
    assert gaps["race"] == pytest.approx(abs(auc["A"] - auc["B"]))
    assert gaps["race"] is not None and gaps["race"] > 0.15
    assert set(gaps) == {"race", "gender"}


def test_max_subgroup_auc_gap_is_none_with_fewer_than_two_gated_levels() -> None:
    def level(name: str, auc: float | None, gated: bool) -> SubgroupMetrics:
        return SubgroupMetrics(
            attribute="age_band",
            level=name,
            n=100,
            positives=10,
            prevalence=0.1,
            roc_auc=auc,
            flagged_rate=0.2,
            sensitivity=0.5,
            gated=gated,
        )

    assert max_subgroup_auc_gap([level("[0-40)", 0.9, True), level("[40-60)", 0.5, False)]) == {"age_band": None}
    assert max_subgroup_auc_gap([]) == {}


def test_subgroup_attribute_length_must_match() -> None:
    with pytest.raises(ValueError, match="attribute 'race'"):
        subgroup_report([0, 1], [0.1, 0.2], {"race": ["A"]}, threshold=0.5, min_size=1, min_positives=1)


# --------------------------------------------------------------------------- numpy AUC and AP against sklearn


def _random_case(seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Random size, prevalence and score resolution: rounding makes ties, some of them mixed-class."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    y = rng.binomial(1, rng.uniform(0.02, 0.6), n).astype(np.int64)
    y[rng.choice(n, 2, replace=False)] = [0, 1]  # both classes, always
    score = np.clip(rng.beta(1.5, 6.0, n) + rng.uniform(0, 0.3) * y, 0.0, 1.0)
    return y, np.round(score, int(rng.integers(1, 6)))


@pytest.mark.parametrize("seed", range(25))
def test_roc_auc_equals_sklearn_on_random_data(seed: int) -> None:
    y, score = _random_case(seed)
    assert metrics.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


@pytest.mark.parametrize("seed", range(25))
def test_average_precision_equals_sklearn_on_random_data(seed: int) -> None:
    y, score = _random_case(seed)
    assert metrics.average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_average_precision_counts_tied_rows_together() -> None:
    # Thresholds 0.9 (1 positive of 1 flagged), 0.5 (2 of 3 flagged: one positive, one negative
    # tied there), 0.1 (3 of 5): AP = 1/3·1 + 1/3·2/3 + 1/3·3/5.
    y = np.array([1, 1, 0, 1, 0])
    score = np.array([0.9, 0.5, 0.5, 0.1, 0.1])
    expected = (1 + 2 / 3 + 3 / 5) / 3
    assert metrics.average_precision(y, score) == pytest.approx(expected)
    assert average_precision_score(y, score) == pytest.approx(expected)


def test_auc_and_ap_need_the_classes_they_measure() -> None:
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc(np.zeros(4, dtype=int), np.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="a positive"):
        metrics.average_precision(np.zeros(4, dtype=int), np.linspace(0, 1, 4))
    assert metrics.average_precision(np.ones(4, dtype=int), np.linspace(0, 1, 4)) == 1.0


def test_metrics_do_not_import_sklearn() -> None:
    """The evaluate Lambda's bundle has no scikit-learn: computing every report must not need it."""
    script = (
        "import sys; sys.modules['sklearn'] = None; sys.modules['scipy'] = None\n"
        "import numpy as np\n"
        "from clinrisk.evaluation.metrics import classification_report, subgroup_report\n"
        "rng = np.random.default_rng(0); y = rng.binomial(1, 0.2, 500); s = rng.uniform(0, 1, 500)\n"
        "classification_report(y, s, np.arange(500), threshold=0.5, bootstrap_rounds=10)\n"
        "subgroup_report(y, s, {'race': ['A', 'B'] * 250}, threshold=0.5, min_size=1, min_positives=1)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
