"""The statistics of the monitor, in numpy and the standard library only.

- PSI with the same floor as `clinrisk.data.baseline` (and evidently), on the reference's bins.
- The critical PSI of a same-distribution window. For two samples of sizes n and m from one
  distribution over k bins, PSI ≈ Σ (q−p)²/p · (1 + o(1)), and nm/(n+m) · that sum is
  asymptotically chi-square with k−1 degrees of freedom. So PSI's (1−α) quantile under "no
  drift" is χ²(k−1, 1−α) · (1/n + 1/m): it grows as the window shrinks, which is why a fixed
  threshold cries wolf on small windows.
- Jensen–Shannon distance (natural log, as scipy's `jensenshannon` by default).
- NDCG of the attribution ranking as SageMaker Clarify defines it.
- CBPE: expected ROC-AUC from calibrated probabilities alone (NannyML's confidence-based
  performance estimation): every pair (i, j) is a (positive, negative) pair with probability
  p_i (1 − p_j), so the expected share of correctly ordered pairs is a sum over sorted scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

PSI_FLOOR = 1e-4  # as clinrisk.data.baseline and evidently: keeps log() finite for an empty bin

FloatArray = npt.NDArray[np.float64]


def shares(counts: npt.ArrayLike) -> FloatArray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total else counts


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI of `actual` shares against `expected` shares, on the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), PSI_FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def chi2_quantile(df: int, probability: float) -> float:
    """Wilson–Hilferty approximation of the chi-square quantile (within ~1% for df ≥ 2 in the tail)."""
    if df < 1:
        return 0.0
    z = NormalDist().inv_cdf(probability)
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def psi_critical(bins: int, reference_rows: int, window_rows: int, alpha: float) -> float:
    """PSI that a same-distribution window exceeds with probability about `alpha`."""
    if bins < 2 or window_rows < 1 or reference_rows < 1:
        return math.inf
    return chi2_quantile(bins - 1, 1.0 - alpha) * (1.0 / reference_rows + 1.0 / window_rows)


def js_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen–Shannon distance (square root of the divergence, natural log) of two distributions."""
    p_, q_ = shares(p), shares(q)
    m = (p_ + q_) / 2.0

    def kl(a: FloatArray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log(a[present] / m[present])))

    return math.sqrt(max((kl(p_) + kl(q_)) / 2.0, 0.0))


def ndcg(reference: Mapping[str, float], current: Mapping[str, float], k: int) -> float:
    """Clarify's attribution drift: the current top-k features by mean |SHAP|, scored by their
    reference attributions, against the reference's own top k. 1.0: same ranking."""
    ideal = sorted(reference.values(), reverse=True)[:k]
    ranked = sorted(current, key=lambda name: -current[name])[:k]
    dcg = sum(reference.get(name, 0.0) / math.log2(i + 2) for i, name in enumerate(ranked))
    idcg = sum(value / math.log2(i + 2) for i, value in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 1.0


def expected_auc(probabilities: npt.ArrayLike) -> float:
    """CBPE's expected ROC-AUC of calibrated probabilities (ties count half)."""
    p = np.sort(np.asarray(probabilities, dtype=float))
    if p.size < 2:
        return math.nan
    negatives = 1.0 - p
    # Σ over ordered pairs s_i > s_j of p_i (1−p_j), with ties (equal p) counted half.
    values, starts, counts = np.unique(p, return_index=True, return_counts=True)
    negatives_below = np.concatenate([[0.0], np.cumsum(negatives)])[starts]
    tie_negatives = np.add.reduceat(negatives, starts)
    tie_positives = np.add.reduceat(p, starts)
    correct = np.sum(tie_positives * negatives_below) + 0.5 * np.sum(
        tie_positives * tie_negatives - values * (1 - values) * counts
    )
    pairs = p.sum() * negatives.sum() - np.sum(p * negatives)
    return float(correct / pairs) if pairs > 0 else math.nan


def expected_calibration_error(labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 10) -> float:
    """ECE over equal-width probability bins: Σ share(bin) · |observed rate − mean probability|."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(index):
        rows = index == b
        total += rows.mean() * abs(y[rows].mean() - p[rows].mean())
    return float(total)
