"""Evaluation metrics for binary risk scores: discrimination, calibration, operating point, subgroups.

Everything here is pure numpy and vectorised, because the pipeline scores ~20,000-row test
sets inside a 90 s budget. Results are pydantic models so they go straight into MLflow, the
model card and the gate as JSON.

Inputs: `y_true` holds 0/1 labels, `y_score` probabilities in [0, 1], `groups` the patient
id of each row (encounters of one patient are correlated, so the bootstrap resamples
patients, not rows). Error messages never include patient values.

No scikit-learn (or scipy): the evaluate Lambda runs this module, and its bundle must stay
under Lambda's 250 MB. `roc_auc` and `average_precision` equal scikit-learn's
`roc_auc_score` and `average_precision_score` (tests/unit/test_metrics.py compares them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from typing import Unpack  # 3.11; the training image runs 3.10, where only the annotation names it

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UNKNOWN_LEVEL = "Unknown"
# Bound on the (rounds × rows) weight matrix built at once by the bootstrap (~32 MB of float64).
_BOOTSTRAP_CELLS_PER_CHUNK = 4_000_000


class ThresholdMetrics(BaseModel):
    """The confusion matrix at one operating threshold; flagged means `score >= threshold`."""

    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    f1: float
    flagged_rate: float
    tp: int
    fp: int
    tn: int
    fn: int


class ClassificationMetrics(BaseModel):
    """Whole-test-set metrics of one model. The AUC interval is a patient-grouped bootstrap."""

    n: int
    positives: int
    prevalence: float
    roc_auc: float
    roc_auc_ci_low: float | None = Field(
        description="Lower percentile bound; None when no bootstrap round had both classes."
    )
    roc_auc_ci_high: float | None
    pr_auc: float = Field(description="Average precision.")
    brier: float
    ece: float = Field(description="Expected calibration error over equal-frequency bins.")
    at_threshold: ThresholdMetrics


class SubgroupMetrics(BaseModel):
    """Metrics of one level of one attribute (e.g. race = Caucasian)."""

    attribute: str
    level: str
    n: int
    positives: int
    prevalence: float
    roc_auc: float | None = Field(description="None when the level lacks one of the classes.")
    flagged_rate: float
    sensitivity: float | None = Field(description="None when the level has no positives.")
    gated: bool = Field(description="Large enough (size, positives and negatives) to count in the gate.")


# --------------------------------------------------------------------------- input checks


def _as_labels_scores(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """Validate and convert; messages name the argument, never the offending values."""
    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError("y_true and y_score must be 1-D arrays")
    if labels.shape != scores.shape:
        raise ValueError("y_true and y_score must have the same length")
    if labels.size == 0:
        raise ValueError("y_true and y_score must not be empty")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if not np.isfinite(scores).all() or scores.min() < 0.0 or scores.max() > 1.0:
        raise ValueError("y_score must hold finite probabilities in [0, 1]")
    return labels.astype(np.int64), scores


def _check_same_length(name: str, values: np.ndarray, n: int) -> None:
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array with one entry per row of y_true")


def _ratio(numerator: float, denominator: float) -> float:
    """A rate that is 0.0 (not NaN, not a warning) when its denominator is empty."""
    return float(numerator / denominator) if denominator else 0.0


# --------------------------------------------------------------------------- calibration


def equal_frequency_bins(y_score: npt.ArrayLike, bins: int = 10) -> tuple[IntArray, int]:
    """Assign each score to one of at most `bins` quantile bins; returns (bin index, number of bins).

    Readmission scores are skewed (most patients are low risk), so equal-width bins would
    leave the upper bins nearly empty and the ECE would be dominated by noise there;
    quantile bins give every bin about n/bins rows.

    Edges are empirical quantiles (actual scores) and a bin is (previous edge, edge], so tied
    scores always share a bin and no bin is empty. When ties make edges coincide, duplicates
    are dropped and fewer bins result (all scores equal: one bin).
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    scores = np.asarray(y_score, dtype=np.float64)
    edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf"))
    inner = edges[edges < scores.max()]  # an edge at the maximum would leave the top bin empty
    # side="left": a score equal to an edge belongs to the bin that edge closes.
    bin_index = np.searchsorted(inner, scores, side="left").astype(np.int64)
    return bin_index, int(inner.size + 1)


def calibration_bins(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, bins: int = 10
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Per non-empty equal-frequency bin: (mean predicted, observed rate, count)."""
    labels, scores = _as_labels_scores(y_true, y_score)
    bin_index, n_bins = equal_frequency_bins(scores, bins)
    counts = np.bincount(bin_index, minlength=n_bins)
    score_sums = np.bincount(bin_index, weights=scores, minlength=n_bins)
    label_sums = np.bincount(bin_index, weights=labels, minlength=n_bins)
    keep = counts > 0
    return score_sums[keep] / counts[keep], label_sums[keep] / counts[keep], counts[keep].astype(np.int64)


def expected_calibration_error(y_true: npt.ArrayLike, y_score: npt.ArrayLike, bins: int = 10) -> float:
    """ECE: the row-weighted mean over equal-frequency bins of |mean predicted − observed rate|."""
    mean_predicted, observed, counts = calibration_bins(y_true, y_score, bins)
    return float(np.sum(counts * np.abs(mean_predicted - observed)) / counts.sum())


# --------------------------------------------------------------------------- AUC and bootstrap


def weighted_roc_auc(y_true: npt.ArrayLike, y_score: npt.ArrayLike, weights: npt.ArrayLike) -> FloatArray:
    """ROC-AUC under each row of `weights` (shape (rounds, n) or (n,)); NaN where a class has no weight.

    Rank-based: AUC = Σ_pos w·(negative weight strictly below + ½ tied negative weight) /
    (W_pos·W_neg). One sort serves every row of weights, which is what makes the bootstrap
    cheap. Equals sklearn's `roc_auc_score(..., sample_weight=w)`.
    """
    labels, scores = _as_labels_scores(y_true, y_score)
    weight_matrix = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weight_matrix.ndim != 2 or weight_matrix.shape[1] != labels.size:
        raise ValueError("weights must have shape (rounds, n) or (n,)")
    order, is_positive, block_starts = _sort_by_score(labels, scores)
    return _sorted_weighted_auc(is_positive, block_starts, weight_matrix[:, order])


def _sort_by_score(labels: IntArray, scores: FloatArray) -> tuple[IntArray, npt.NDArray[np.bool_], IntArray]:
    """(ascending order, labels in that order, start index of each run of tied scores)."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    block_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    return order, labels[order].astype(bool), block_starts


def _sorted_weighted_auc(is_positive: npt.NDArray[np.bool_], block_starts: IntArray, weights: FloatArray) -> FloatArray:
    """Core of `weighted_roc_auc` on rows already sorted by score; blocks are runs of tied scores."""
    positive_w = np.where(is_positive, weights, 0.0)
    negative_w = weights - positive_w
    if block_starts.size < is_positive.size:  # only pay for reduceat when there are ties
        positive_w = np.add.reduceat(positive_w, block_starts, axis=1)
        negative_w = np.add.reduceat(negative_w, block_starts, axis=1)
    negatives_below = np.cumsum(negative_w, axis=1) - negative_w
    numerator = np.sum(positive_w * (negatives_below + 0.5 * negative_w), axis=1)
    denominator = positive_w.sum(axis=1) * negative_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def roc_auc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """ROC-AUC (ties count one half); the test set must hold both classes."""
    labels, scores = _as_labels_scores(y_true, y_score)
    auc = float(weighted_roc_auc(labels, scores, np.ones(labels.size))[0])
    if np.isnan(auc):
        raise ValueError("y_true must contain both classes to compute a ROC-AUC")
    return auc


def average_precision(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Average precision: Σ_k (R_k − R_{k−1}) · P_k over the distinct scores, highest first,
    where a threshold flags every row scored at or above it (so tied rows enter together)."""
    labels, scores = _as_labels_scores(y_true, y_score)
    positives = int(labels.sum())
    if positives == 0:
        raise ValueError("y_true must contain a positive to compute an average precision")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # The last row of each run of tied scores: where one threshold's flagged set ends.
    ends = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), labels.size - 1]
    true_positives = np.cumsum(labels[order])[ends]
    precision = true_positives / (ends + 1.0)
    recall_gain = np.diff(true_positives, prepend=0) / positives
    return float(np.sum(recall_gain * precision))


def patient_multiplicities(n_groups: int, *, rounds: int, seed: int) -> IntArray:
    """How many times each patient is drawn in each bootstrap round: shape (rounds, n_groups).

    Drawing n_groups patient indices with replacement and counting them (one flat bincount)
    is the same distribution as a multinomial draw, but about twice as fast.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(rounds, n_groups), dtype=np.int64)
    draws += np.arange(rounds, dtype=np.int64)[:, None] * n_groups
    return np.bincount(draws.ravel(), minlength=rounds * n_groups).reshape(rounds, n_groups)


def grouped_bootstrap_aucs(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    rounds: int = 200,
    seed: int = 42,
) -> FloatArray:
    """The AUC of each bootstrap round that resamples patients with replacement; NaN for a round
    without both classes.

    A round never materialises the resampled rows: a patient drawn k times contributes each of
    their rows with weight k, which gives the same AUC as k copies of those rows.
    """
    labels, scores = _as_labels_scores(y_true, y_score)
    group_values = np.asarray(groups)
    _check_same_length("groups", group_values, labels.size)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    _, codes = np.unique(group_values, return_inverse=True)
    codes = codes.reshape(-1)
    n_groups = int(codes.max()) + 1
    multiplicities = patient_multiplicities(n_groups, rounds=rounds, seed=seed)

    order, is_positive, block_starts = _sort_by_score(labels, scores)
    sorted_codes = codes[order]
    chunk = max(1, _BOOTSTRAP_CELLS_PER_CHUNK // labels.size)
    aucs = np.empty(rounds, dtype=np.float64)
    for start in range(0, rounds, chunk):
        row_weights = multiplicities[start : start + chunk][:, sorted_codes].astype(np.float64)
        aucs[start : start + chunk] = _sorted_weighted_auc(is_positive, block_starts, row_weights)
    return aucs


class Bootstrap(TypedDict, total=False):
    """`grouped_bootstrap_aucs`'s options, passed through by what summarises its rounds."""

    rounds: int
    seed: int


def grouped_bootstrap_auc_ci(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    level: float = 0.95,
    **bootstrap: Unpack[Bootstrap],
) -> tuple[float, float]:
    """Percentile confidence interval of ROC-AUC from a patient-grouped bootstrap (`grouped_bootstrap_aucs`).

    Rounds whose resample lacks a class are skipped. Returns (nan, nan) if every round was skipped.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    aucs = grouped_bootstrap_aucs(y_true, y_score, groups, **bootstrap)
    valid = aucs[~np.isnan(aucs)]
    if valid.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- operating point


def threshold_metrics(y_true: npt.ArrayLike, y_score: npt.ArrayLike, threshold: float) -> ThresholdMetrics:
    """Confusion-matrix metrics when rows with `score >= threshold` are flagged."""
    labels, scores = _as_labels_scores(y_true, y_score)
    flagged = scores >= threshold
    positive = labels == 1
    tp = int(np.count_nonzero(flagged & positive))
    fp = int(np.count_nonzero(flagged & ~positive))
    fn = int(np.count_nonzero(~flagged & positive))
    tn = int(labels.size - tp - fp - fn)
    return ThresholdMetrics(
        threshold=float(threshold),
        sensitivity=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        ppv=_ratio(tp, tp + fp),
        npv=_ratio(tn, tn + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        flagged_rate=_ratio(tp + fp, labels.size),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


def classification_report(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    threshold: float,
    bootstrap_rounds: int = 200,
    seed: int = 42,
) -> ClassificationMetrics:
    """All whole-test-set metrics; the test set must contain both classes."""
    labels, scores = _as_labels_scores(y_true, y_score)
    positives = int(labels.sum())
    if positives in (0, labels.size):
        raise ValueError("y_true must contain both classes to evaluate a classifier")
    ci_low, ci_high = grouped_bootstrap_auc_ci(labels, scores, groups, rounds=bootstrap_rounds, seed=seed)
    return ClassificationMetrics(
        n=int(labels.size),
        positives=positives,
        prevalence=positives / labels.size,
        roc_auc=roc_auc(labels, scores),
        roc_auc_ci_low=None if np.isnan(ci_low) else ci_low,
        roc_auc_ci_high=None if np.isnan(ci_high) else ci_high,
        pr_auc=average_precision(labels, scores),
        brier=float(np.mean((scores - labels) ** 2)),
        ece=expected_calibration_error(labels, scores),
        at_threshold=threshold_metrics(labels, scores, threshold),
    )


# --------------------------------------------------------------------------- subgroups


def _levels(values: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """Attribute values as strings; missing values (None, NaN, pandas NA) become "Unknown"."""
    import pandas as pd

    raw = np.asarray(values, dtype=object)
    return np.where(pd.isna(raw), UNKNOWN_LEVEL, raw).astype(str)


def _subgroup(
    labels: IntArray,
    scores: FloatArray,
    *,
    attribute: str,
    level: str,
    threshold: float,
    min_size: int,
    min_positives: int,
) -> SubgroupMetrics:
    n = int(labels.size)
    positives = int(labels.sum())
    negatives = n - positives
    flagged = scores >= threshold
    both_classes = positives > 0 and negatives > 0
    return SubgroupMetrics(
        attribute=attribute,
        level=level,
        n=n,
        positives=positives,
        prevalence=positives / n,
        roc_auc=roc_auc(labels, scores) if both_classes else None,
        flagged_rate=float(flagged.mean()),
        sensitivity=float(flagged[labels == 1].mean()) if positives else None,
        gated=n >= min_size and positives >= min_positives and negatives >= min_positives,
    )


def subgroup_report(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    attributes: Mapping[str, npt.ArrayLike],
    *,
    threshold: float,
    min_size: int,
    min_positives: int,
) -> list[SubgroupMetrics]:
    """Metrics for every level of every attribute, in attribute order then sorted level order.

    Small levels are still reported (the model card shows them) but `gated` is False, so the
    gate ignores their AUC, which would be too noisy to act on.
    """
    labels, scores = _as_labels_scores(y_true, y_score)
    report: list[SubgroupMetrics] = []
    for attribute, values in attributes.items():
        levels = _levels(values)
        _check_same_length(f"attribute {attribute!r}", levels, labels.size)
        names, codes = np.unique(levels, return_inverse=True)
        codes = codes.reshape(-1)
        for code, level in enumerate(names):
            rows = codes == code
            report.append(
                _subgroup(
                    labels[rows],
                    scores[rows],
                    attribute=attribute,
                    level=str(level),
                    threshold=threshold,
                    min_size=min_size,
                    min_positives=min_positives,
                )
            )
    return report


def max_subgroup_auc_gap(subgroups: Sequence[SubgroupMetrics]) -> dict[str, float | None]:
    """Per attribute, max − min AUC over gated levels; None when fewer than two levels are gated."""
    aucs: dict[str, list[float]] = {}
    for subgroup in subgroups:
        aucs.setdefault(subgroup.attribute, [])
        if subgroup.gated and subgroup.roc_auc is not None:
            aucs[subgroup.attribute].append(subgroup.roc_auc)
    return {attribute: (max(v) - min(v) if len(v) >= 2 else None) for attribute, v in aucs.items()}
