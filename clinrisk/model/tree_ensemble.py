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

Those two tables are folded further, at load time, into one value per (path, pattern, element):
φ itself, for each of the 2^D patterns a row can show on the path. Explaining a row is then
one gather of D contiguous values per path, and a sum per feature, with no arithmetic per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
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
    # When the sibling of this leaf is a leaf too: (tree, parent node), and the parent's split
    # feature, the one element at which the two paths differ.
    siblings: tuple[int, int] | None = None
    split_feature: int = -1


def _tree_paths(tree: dict[str, Any], index: int) -> list[_Path]:
    left, right = tree["left_children"], tree["right_children"]
    feature, threshold = tree["split_indices"], tree["split_conditions"]
    default_left, cover = tree["default_left"], tree["sum_hessian"]
    if any(kind != 0 for kind in tree["split_type"]):
        raise UnsupportedModelError("categorical splits are not supported by the numpy evaluator")
    paths: list[_Path] = []
    stack: list[tuple[int, int, dict[int, tuple[float, float, bool, float]]]] = [(0, -1, {})]
    while stack:
        node, parent, conditions = stack.pop()
        if left[node] == -1:
            sibling = -1 if parent < 0 else right[parent] if left[parent] == node else left[parent]
            paired = sibling >= 0 and left[sibling] == -1
            paths.append(
                _Path(
                    leaf_value=float(np.float32(threshold[node])),
                    conditions=conditions,
                    siblings=(index, parent) if paired else None,
                    split_feature=int(feature[parent]) if paired else -1,
                )
            )
            continue
        f, t = int(feature[node]), float(np.float32(threshold[node]))
        for child, goes_left in ((left[node], True), (right[node], False)):
            lower, upper, missing, zero = conditions.get(f, (-math.inf, math.inf, True, 1.0))
            bounded = (lower, min(upper, t)) if goes_left else (max(lower, t), upper)
            follows_default = bool(default_left[node]) == goes_left
            fraction = zero * cover[child] / cover[node]
            stack.append((child, node, {**conditions, f: (*bounded, missing and follows_default, fraction)}))
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


def _element_masks(depth: int) -> tuple[IntArray, IntArray]:
    """Each element's bit, and the bits of the other elements."""
    element = 1 << np.arange(depth)
    return element, (1 << depth) - 1 - element


def _phi(
    leaf_value: FloatArray, follows: BoolArray, zero: FloatArray, unfollowed: FloatArray, followed: FloatArray
) -> FloatArray:
    """φ_k = v (o_k − z_k) · Π_{j∈B} z_j · E(A): `unfollowed` is the subset product over B, the
    other elements the row does not follow, and `followed` the subset weight over A, those it does."""
    return np.asarray(leaf_value * (follows - zero) * unfollowed * followed, dtype=np.float64)


def _contribution_table(
    leaf_value: FloatArray, zero: FloatArray, product: FloatArray, weight: FloatArray
) -> FloatArray:
    """φ for every path, every pattern (bitmask of the elements a row follows) and every element:
    shape (P · 2^D, D), row p · 2^D + pattern. The same products of the same values as φ computed
    per row (`TreeEnsemble._phi_of_rows`), so the values are identical."""
    paths, depth = zero.shape
    pattern = np.arange(1 << depth)[:, None]  # every pattern, (2^D, 1)
    element, others = _element_masks(depth)
    table = _phi(
        leaf_value[:, None, None],
        (pattern & element) != 0,
        zero[:, None, :],
        np.take(product, (~pattern & others).ravel(), axis=1).reshape(paths, -1, depth),
        np.take(weight, (pattern & others).ravel(), axis=1).reshape(paths, -1, depth),
    )  # (P, 2^D, D)
    return np.ascontiguousarray(table.reshape(-1, depth))


@dataclass(frozen=True)
class _Conditions:
    """The distinct (feature, interval, missing direction) conditions of all paths' elements: far
    fewer than paths × D (sibling leaves share all but their last split), so a row is tested
    against each once, and the results are gathered into each path's pattern."""

    feature: IntArray  # (C,)
    lower: npt.NDArray[np.float32]  # (C,) a row meets a condition if lower <= x < upper
    upper: npt.NDArray[np.float32]
    missing_follows: BoolArray  # (C,) ... or if x is missing and every split's default is the path
    of_element: IntArray  # (P, D) the condition of each path element

    def met(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        """1 where a row meets a condition, (N, C); column `feature_count` is the padding's."""
        padded = np.concatenate([rows, np.zeros((rows.shape[0], 1), dtype=np.float32)], axis=1)
        values = padded[:, self.feature]
        with np.errstate(invalid="ignore"):
            met = ((values >= self.lower) & (values < self.upper)) | (np.isnan(values) & self.missing_follows)
        return met.view(np.uint8)


def _patterns(met: npt.NDArray[np.uint8], of_element: IntArray, *, spare_bits: int = 0) -> IntArray:
    """Bitmask per (row, path) of the elements whose conditions the row meets, (N, paths), in
    the narrowest integer type that leaves `spare_bits` free above the elements' bits."""
    bits = of_element.shape[1] + spare_bits
    kind = np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.int64)
    pattern: npt.NDArray[Any] = np.take(met, of_element[:, 0], axis=1).astype(kind)
    for j in range(1, of_element.shape[1]):
        pattern |= np.take(met, of_element[:, j], axis=1).astype(kind) << j
    return pattern.astype(np.int64)


def _bins(feature: IntArray, feature_count: int) -> IntArray:
    """The output cell, row × (features + 1) + feature, of each φ of a chunk of rows laid out as
    (row, path, element); the padding column collects the padding's zeros and is dropped."""
    rows = np.arange(_ROWS_PER_CHUNK)[:, None, None] * (feature_count + 1)
    return np.ascontiguousarray((rows + feature).ravel())


@dataclass(frozen=True)
class _Units:
    """φ tabulated per unit, for units whose paths have `length` elements besides padding.

    A unit is a lone leaf's path, or the paths of two sibling leaves together. Siblings have the
    same elements with the same conditions, except at their parent's split, where a row follows
    one of them or neither (never both). So one gather serves both: the unit's table row is
    indexed by the first path's pattern plus one bit, whether the row follows the second path at
    that split, and holds the sum of both paths' φ. That halves the gathers and sums for the
    leaves that have a leaf sibling (~70% of them). Padding elements, always followed and with
    φ = 0, are left out: units are grouped by length, each group's table as narrow as its paths."""

    of_element: IntArray  # (U, L) the conditions of the first path's elements
    second: IntArray  # (U,) the condition of the second path at the split; never met for lone leaves
    feature: IntArray  # (U, L) the elements' features (the same for both paths)
    table: FloatArray  # (U · 2^(L+1), L) row u · 2^(L+1) + second bit · 2^L + first pattern
    feature_count: int

    @cached_property
    def bins(self) -> IntArray:
        return _bins(self.feature, self.feature_count)

    def phi(self, met: npt.NDArray[np.uint8]) -> FloatArray:
        length = self.feature.shape[1]
        index = _patterns(met, self.of_element, spare_bits=1) | (
            np.take(met, self.second, axis=1).astype(np.int64) << length
        )
        offset = np.arange(self.second.size) << (length + 1)
        return np.take(self.table, offset + index, axis=0)  # (N, U, L)


def _units(
    paths: list[_Path], table: FloatArray, feature: IntArray, conditions: _Conditions, *, never: int
) -> tuple[_Units, ...]:
    """`table`: φ per path and pattern, (P · 2^D, D), as `_contribution_table` gives it;
    `never`: a condition no row meets (the second bit of a lone leaf's unit)."""
    depth = feature.shape[1]
    siblings: dict[tuple[int, int], list[int]] = {}
    for i, path in enumerate(paths):
        siblings.setdefault(path.siblings or (-1, -i - 1), []).append(i)
    first = np.array([group[0] for group in siblings.values()])
    second = np.array([group[-1] for group in siblings.values()])
    paired = np.array([len(group) == 2 for group in siblings.values()])
    split = np.array([sorted(paths[g[0]].conditions).index(paths[g[0]].split_feature) if len(g) == 2 else 0
                      for g in siblings.values()])  # fmt: skip
    of_element = conditions.of_element
    others = np.arange(depth) != split[:, None]
    if not np.array_equal(of_element[first[paired]][others[paired]], of_element[second[paired]][others[paired]]):
        raise AssertionError("sibling leaves must share every condition but their parent's split")
    lengths = np.array([len(paths[i].conditions) for i in first])
    groups = []
    for length in np.unique(lengths[lengths > 0]):  # a tree that is a single leaf explains nothing
        chosen = lengths == length
        pattern = np.arange(2 << length)
        padding = (1 << depth) - (1 << length)  # padding elements are always followed
        low, high = (pattern & ((1 << length) - 1)) | padding, pattern >> length
        units = table[first[chosen, None] * (1 << depth) + low]  # (U, 2^(L+1), D)
        e = split[chosen, None]
        second_pattern = (low & ~(1 << e)) | (high << e)
        units[paired[chosen]] += table[second[chosen, None] * (1 << depth) + second_pattern][paired[chosen]]
        groups.append(
            _Units(
                of_element=of_element[first[chosen], :length],
                second=np.where(paired[chosen], of_element[second[chosen], split[chosen]], never),
                feature=feature[first[chosen], :length],
                table=np.ascontiguousarray(units[..., :length].reshape(-1, length)),
                feature_count=int(conditions.feature[never]),  # the padding column
            )
        )
    return tuple(groups)


# Building the unit tables needs the per-path table, paths × 2^D × D floats (16 MB for 5,000
# depth-6 paths); the unit tables are smaller. Deeper models would need far more; they compute φ
# per row from the subset tables instead.
_TABLE_BYTES_LIMIT = 128 * 1024 * 1024


@dataclass(frozen=True)
class TreeEnsemble:
    """Every root-to-leaf path of every tree, as arrays of shape (paths, D)."""

    feature_count: int
    base_margin: float
    leaf_value: FloatArray  # (P,)
    feature: IntArray  # (P, D); padding elements point at column `feature_count`
    conditions: _Conditions
    zero_fraction: FloatArray  # (P, D)
    subset_product: FloatArray  # (P, 2^D)
    subset_weight: FloatArray  # (P, 2^D)
    contribution_table: tuple[_Units, ...] | None  # by path length; None over _TABLE_BYTES_LIMIT

    @property
    def depth(self) -> int:
        return int(self.feature.shape[1])

    @cached_property  # read for every chunk of rows explained
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
        paths = [path for i, tree in enumerate(model["trees"]) for path in _tree_paths(tree, i)]
        depth = max(1, *(len(p.conditions) for p in paths))
        return cls._from_paths(paths, depth, feature_count, math.log(base_score / (1 - base_score)))

    @classmethod
    def _from_paths(cls, paths: list[_Path], depth: int, feature_count: int, base_margin: float) -> TreeEnsemble:
        shape = (len(paths), depth)
        feature = np.full(shape, feature_count, dtype=np.int64)
        zero = np.ones(shape)
        # Padding elements test the zero padding column against (-inf, inf): always met.
        padding = (feature_count, -math.inf, math.inf, True)
        distinct: dict[tuple[int, float, float, bool], int] = {padding: 0}
        of_element = np.zeros(shape, dtype=np.int64)
        for i, path in enumerate(paths):
            for j, (f, (lo, hi, follows, fraction)) in enumerate(sorted(path.conditions.items())):
                feature[i, j], zero[i, j] = f, fraction
                of_element[i, j] = distinct.setdefault((f, lo, hi, follows), len(distinct))
        never = distinct.setdefault((feature_count, math.inf, -math.inf, False), len(distinct))
        columns = list(zip(*distinct, strict=True))
        conditions = _Conditions(
            feature=np.array(columns[0], dtype=np.int64),
            lower=np.array(columns[1], dtype=np.float32),
            upper=np.array(columns[2], dtype=np.float32),
            missing_follows=np.array(columns[3], dtype=bool),
            of_element=of_element,
        )
        product, weight = _subset_tables(zero, depth)
        leaf_value = np.array([p.leaf_value for p in paths])
        table = None
        if len(paths) * (1 << depth) * depth * 8 <= _TABLE_BYTES_LIMIT:
            by_path = _contribution_table(leaf_value, zero, product, weight)
            table = _units(paths, by_path, feature, conditions, never=never)
        return cls(feature_count, base_margin, leaf_value, feature, conditions, zero, product, weight, table)

    def margins(self, features: npt.ArrayLike) -> FloatArray:
        """Raw scores (log-odds), one per row of `features` (rows × feature_count, NaN = missing)."""
        rows = self._rows(features)
        full = (1 << self.depth) - 1
        out = np.empty(rows.shape[0])
        for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
            met = self.conditions.met(rows[start : start + _ROWS_PER_CHUNK])
            reached = _patterns(met, self.conditions.of_element) == full
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
        met = self.conditions.met(rows)
        n, columns = rows.shape[0], self.feature_count + 1
        # bincount adds in the order given, the same for a row whatever its chunk (a shorter last
        # chunk's rows have the first bins), so a row's values do not depend on its batch.
        if self.contribution_table is None:
            phi = self._phi_of_rows(_patterns(met, self.conditions.of_element))  # (N, P, D)
            summed = np.bincount(self._path_bins[: phi.size], weights=phi.ravel(), minlength=n * columns)
        else:
            summed = np.zeros(n * columns)
            for units in self.contribution_table:
                phi = units.phi(met)  # (N, U, L)
                summed += np.bincount(units.bins[: phi.size], weights=phi.ravel(), minlength=n * columns)
        summed = summed.reshape(n, columns)
        summed[:, -1] = self.expected_margin
        return np.asarray(summed, dtype=np.float64)

    @cached_property
    def _path_bins(self) -> IntArray:
        return _bins(self.feature, self.feature_count)

    def _phi_of_rows(self, pattern: IntArray) -> FloatArray:
        """φ per (row, path, element) from the subset tables, for models too deep for the table."""
        element, others = _element_masks(self.depth)
        paths = np.arange(self.leaf_value.size)[:, None]
        followed = pattern[..., None] & others  # (N, P, D)
        return _phi(
            self.leaf_value[:, None],
            (pattern[..., None] & element) != 0,
            self.zero_fraction,
            self.subset_product[paths, ~pattern[..., None] & others],
            self.subset_weight[paths, followed],
        )

    def _rows(self, features: npt.ArrayLike) -> npt.NDArray[np.float32]:
        # float32, as xgboost's DMatrix: a threshold equal to float32(x) must compare the same way.
        rows = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if rows.shape[1] != self.feature_count:
            raise ValueError(f"expected {self.feature_count} feature columns, got {rows.shape[1]}")
        return rows
