"""A trained XGBoost model as numpy arrays: margins and exact TreeSHAP without xgboost.

Why: the predict Lambda must stay small, and xgboost drags in scipy (together well over
200 MB unzipped). This module reads the booster's JSON (`model.json`, the file training
writes) and reproduces what xgboost computes, to within float rounding:

* margins: a leaf is reached when every split on its path sends the row its way. Splits
  compare in float32, as xgboost does (its DMatrix stores float32), and missing values follow
  each split's default direction.
* contributions: exact path-dependent TreeSHAP (Lundberg et al. 2020), the algorithm behind
  xgboost's `pred_contribs` and `shap.TreeExplainer`, in the per-path form GPUTreeShap uses.

On one root-to-leaf path with unique features 1..D, let z_j be the fraction of training cover
that follows the path at feature j's splits and o_j ∈ {0, 1} whether the row does. The leaf's
value function is v·Π_{j∈S} o_j·Π_{j∉S} z_j, so feature k's Shapley value is

    φ_k = v (o_k − z_k) · Π_{j∈B} z_j · Σ_s w(s) e_{|A|−s}(z_A),   w(s) = s!(D−s−1)!/D!

where A are the other features the row follows (o_j = 1), B the others it does not, and e_t
the elementary symmetric polynomials. Everything but the row's pattern of o's is fixed, so
the two per-subset factors are tabulated once per path for all 2^D subsets at load time;
scoring a row is then a handful of gathers over (paths × D) arrays. Paths with fewer than D
features are padded with null players (z = o = 1), which leaves Shapley values unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clinrisk.errors import ClinriskError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Rows are scored in chunks so that the (rows × paths × D) intermediates stay a few MB.
_ROWS_PER_CHUNK = 32


class UnsupportedModelError(ClinriskError):
    """The booster uses something this evaluator does not reproduce (e.g. categorical splits)."""


@dataclass(frozen=True)
class _Path:
    leaf_value: float
    # feature -> (lower bound inclusive, upper bound exclusive, missing follows path, zero fraction)
    conditions: dict[int, tuple[float, float, bool, float]]


def _tree_paths(tree: dict[str, Any]) -> list[_Path]:
    left, right = tree["left_children"], tree["right_children"]
    feature, threshold = tree["split_indices"], tree["split_conditions"]
    default_left, cover = tree["default_left"], tree["sum_hessian"]
    if any(kind != 0 for kind in tree["split_type"]):
        raise UnsupportedModelError("categorical splits are not supported by the numpy evaluator")
    paths: list[_Path] = []
    stack: list[tuple[int, dict[int, tuple[float, float, bool, float]]]] = [(0, {})]
    while stack:
        node, conditions = stack.pop()
        if left[node] == -1:
            paths.append(_Path(leaf_value=float(np.float32(threshold[node])), conditions=conditions))
            continue
        f, t = int(feature[node]), float(np.float32(threshold[node]))
        for child, goes_left in ((left[node], True), (right[node], False)):
            lower, upper, missing, zero = conditions.get(f, (-math.inf, math.inf, True, 1.0))
            bounded = (lower, min(upper, t)) if goes_left else (max(lower, t), upper)
            follows_default = bool(default_left[node]) == goes_left
            fraction = zero * cover[child] / cover[node]
            stack.append((child, {**conditions, f: (*bounded, missing and follows_default, fraction)}))
    return paths


def _subset_tables(zero: FloatArray, depth: int) -> tuple[FloatArray, FloatArray]:
    """For every path and every subset U of its D elements (as a bitmask): Π_{j∈U} z_j, and
    E(U) = Σ_s w(s) e_{|U|−s}(z_U), the Shapley-weighted sum over coalitions drawn from U."""
    paths, subsets = zero.shape[0], 1 << depth
    product = np.ones((paths, subsets))
    polynomial = np.zeros((paths, subsets, depth + 1))  # coefficients of Π_{j∈U} (z_j + y)
    polynomial[:, 0, 0] = 1.0
    for subset in range(1, subsets):
        top = subset.bit_length() - 1
        rest, z = subset & ~(1 << top), zero[:, top : top + 1]
        product[:, subset] = product[:, rest] * zero[:, top]
        polynomial[:, subset] = polynomial[:, rest] * z
        polynomial[:, subset, 1:] += polynomial[:, rest, :-1]
    weights = np.array(
        [math.factorial(s) * math.factorial(depth - s - 1) / math.factorial(depth) for s in range(depth)] + [0.0]
    )
    return product, polynomial @ weights


@dataclass(frozen=True)
class TreeEnsemble:
    """Every root-to-leaf path of every tree, as arrays of shape (paths, D)."""

    feature_count: int
    base_margin: float
    leaf_value: FloatArray  # (P,)
    feature: IntArray  # (P, D); padding elements point at column `feature_count`
    lower: npt.NDArray[np.float32]  # (P, D) a row follows the path at a feature if lower <= x < upper
    upper: npt.NDArray[np.float32]
    missing_follows: BoolArray  # (P, D) ... or if x is missing and every split's default is the path
    zero_fraction: FloatArray  # (P, D)
    subset_product: FloatArray  # (P, 2^D)
    subset_weight: FloatArray  # (P, 2^D)

    @property
    def depth(self) -> int:
        return int(self.feature.shape[1])

    @property
    def expected_margin(self) -> float:
        """The SHAP base value: the cover-weighted mean margin over the training data."""
        return float(self.base_margin + self.leaf_value @ np.prod(self.zero_fraction, axis=1))

    @classmethod
    def from_xgboost_json(cls, document: dict[str, Any]) -> TreeEnsemble:
        learner = document["learner"]
        objective = learner["objective"]["name"]
        model = learner["gradient_booster"]["model"]
        if objective != "binary:logistic" or int(model["gbtree_model_param"]["num_parallel_tree"]) != 1:
            raise UnsupportedModelError(f"only single-tree-per-round binary:logistic models are supported: {objective}")
        base_score = float(learner["learner_model_param"]["base_score"].strip("[]"))
        feature_count = int(learner["learner_model_param"]["num_feature"])
        paths = [path for tree in model["trees"] for path in _tree_paths(tree)]
        depth = max(1, *(len(p.conditions) for p in paths))
        return cls._from_paths(paths, depth, feature_count, math.log(base_score / (1 - base_score)))

    @classmethod
    def _from_paths(cls, paths: list[_Path], depth: int, feature_count: int, base_margin: float) -> TreeEnsemble:
        shape = (len(paths), depth)
        feature = np.full(shape, feature_count, dtype=np.int64)
        lower, upper = np.full(shape, -np.inf, dtype=np.float32), np.full(shape, np.inf, dtype=np.float32)
        missing, zero = np.ones(shape, dtype=bool), np.ones(shape)
        for i, path in enumerate(paths):
            for j, (f, (lo, hi, follows, fraction)) in enumerate(sorted(path.conditions.items())):
                feature[i, j], lower[i, j], upper[i, j], missing[i, j], zero[i, j] = f, lo, hi, follows, fraction
        product, weight = _subset_tables(zero, depth)
        leaf_value = np.array([p.leaf_value for p in paths])
        return cls(feature_count, base_margin, leaf_value, feature, lower, upper, missing, zero, product, weight)

    def _follows(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Bitmask per (row, path) of the path's features whose conditions the row meets."""
        padded = np.concatenate([rows, np.zeros((rows.shape[0], 1), dtype=np.float32)], axis=1)
        values = padded[:, self.feature]  # (N, P, D)
        with np.errstate(invalid="ignore"):
            follows = np.where(np.isnan(values), self.missing_follows, (values >= self.lower) & (values < self.upper))
        return np.asarray(follows @ (1 << np.arange(self.depth)), dtype=np.int64)

    def margins(self, features: npt.ArrayLike) -> FloatArray:
        """Raw scores (log-odds), one per row of `features` (rows × feature_count, NaN = missing)."""
        rows = self._rows(features)
        full = (1 << self.depth) - 1
        out = np.empty(rows.shape[0])
        for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
            reached = self._follows(rows[start : start + _ROWS_PER_CHUNK]) == full
            out[start : start + _ROWS_PER_CHUNK] = self.base_margin + reached @ self.leaf_value
        return out

    def contributions(self, features: npt.ArrayLike) -> FloatArray:
        """Exact TreeSHAP values in log-odds, shape (rows, feature_count + 1); the last column is
        the base value, so each row sums to its margin (as xgboost's `pred_contribs`)."""
        rows = self._rows(features)
        out = np.empty((rows.shape[0], self.feature_count + 1))
        for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
            out[start : start + _ROWS_PER_CHUNK] = self._chunk_contributions(rows[start : start + _ROWS_PER_CHUNK])
        return out

    def _chunk_contributions(self, rows: npt.NDArray[np.float32]) -> FloatArray:
        pattern = self._follows(rows)[..., None]  # (N, P, 1)
        element = 1 << np.arange(self.depth)  # (D,)
        follows = (pattern & element) != 0  # (N, P, D)
        others = (1 << self.depth) - 1 - element
        followed_others = pattern & others  # A: the other elements the row follows
        unfollowed_others = ~pattern & others  # B: the other elements it does not
        paths = np.arange(self.leaf_value.size)[:, None]
        phi = (
            self.leaf_value[:, None]
            * (follows - self.zero_fraction)
            * self.subset_product[paths, unfollowed_others]
            * self.subset_weight[paths, followed_others]
        )  # (N, P, D)
        n = rows.shape[0]
        columns = self.feature_count + 1  # the padding column collects zeros and is dropped
        flat = (np.arange(n)[:, None, None] * columns + self.feature).ravel()
        summed = np.bincount(flat, weights=phi.ravel(), minlength=n * columns).reshape(n, columns)
        summed[:, -1] = self.expected_margin
        return np.asarray(summed, dtype=np.float64)

    def _rows(self, features: npt.ArrayLike) -> npt.NDArray[np.float32]:
        # float32, as xgboost's DMatrix: a threshold equal to float32(x) must compare the same way.
        rows = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if rows.shape[1] != self.feature_count:
            raise ValueError(f"expected {self.feature_count} feature columns, got {rows.shape[1]}")
        return rows
