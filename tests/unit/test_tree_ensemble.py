"""The numpy evaluator against xgboost itself and against shap.TreeExplainer."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import shap
import xgboost as xgb

from clinrisk.model import tree_ensemble
from clinrisk.model.tree_ensemble import TreeEnsemble, UnsupportedModelError

ROWS, FEATURES = 3000, 12


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, FEATURES))
    x[:, 3] = rng.integers(0, 5, ROWS)  # ties at integer thresholds, as with counts
    x[:, 4] = np.round(rng.uniform(1, 999, ROWS), 2)  # decimals whose float32 differs from float64
    x[rng.random((ROWS, FEATURES)) < 0.1] = np.nan  # missing values follow default directions
    logit = 0.8 * np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + 0.3 * x[:, 3]
    y = (rng.random(ROWS) < 1 / (1 + np.exp(-np.nan_to_num(logit)))).astype(int)
    return x, y


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    x, y = _data(0)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "min_child_weight": 5, "base_score": 0.3}
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=60)


@pytest.fixture(scope="module")
def ensemble(booster: xgb.Booster) -> TreeEnsemble:
    return TreeEnsemble.from_xgboost_json(json.loads(booster.save_raw("json")))


@pytest.fixture(scope="module")
def unseen() -> np.ndarray:
    return _data(1)[0]


def test_probabilities_match_xgboost_within_1e_6(
    booster: xgb.Booster, ensemble: TreeEnsemble, unseen: np.ndarray
) -> None:
    expected = booster.predict(xgb.DMatrix(unseen))
    ours = 1 / (1 + np.exp(-ensemble.margins(unseen)))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_contributions_match_shap_tree_explainer_within_1e_6(
    booster: xgb.Booster, ensemble: TreeEnsemble, unseen: np.ndarray
) -> None:
    explainer = shap.TreeExplainer(booster)
    expected = explainer.shap_values(unseen)
    ours = ensemble.contributions(unseen)
    np.testing.assert_allclose(ours[:, :-1], expected, rtol=0, atol=1e-6)
    assert ours[0, -1] == pytest.approx(float(np.ravel(explainer.expected_value)[0]), abs=1e-6)


def test_without_the_pattern_table_contributions_are_the_same(
    booster: xgb.Booster, ensemble: TreeEnsemble, unseen: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Models too deep for the per-pattern table compute φ per row from the subset tables; the
    # table adds sibling leaves' φ before the sum over paths, so only the rounding may differ.
    monkeypatch.setattr(tree_ensemble, "_TABLE_BYTES_LIMIT", 0)
    untabled = TreeEnsemble.from_xgboost_json(json.loads(booster.save_raw("json")))
    assert untabled.contribution_table is None and ensemble.contribution_table is not None
    np.testing.assert_allclose(untabled.contributions(unseen), ensemble.contributions(unseen), rtol=0, atol=1e-12)
    expected = shap.TreeExplainer(booster).shap_values(unseen)
    np.testing.assert_allclose(untabled.contributions(unseen)[:, :-1], expected, rtol=0, atol=1e-6)


def test_contributions_match_xgboost_pred_contribs(
    booster: xgb.Booster, ensemble: TreeEnsemble, unseen: np.ndarray
) -> None:
    expected = booster.predict(xgb.DMatrix(unseen), pred_contribs=True)
    np.testing.assert_allclose(ensemble.contributions(unseen), expected, rtol=0, atol=1e-6)


def test_contributions_add_up_to_the_margin(ensemble: TreeEnsemble, unseen: np.ndarray) -> None:
    np.testing.assert_allclose(ensemble.contributions(unseen).sum(axis=1), ensemble.margins(unseen), atol=1e-9)


def test_one_row_scores_as_in_a_batch(ensemble: TreeEnsemble, unseen: np.ndarray) -> None:
    np.testing.assert_array_equal(ensemble.contributions(unseen[5:6])[0], ensemble.contributions(unseen)[5])


def test_a_row_of_all_missing_values_follows_the_default_directions(
    booster: xgb.Booster, ensemble: TreeEnsemble
) -> None:
    empty = np.full((1, FEATURES), np.nan)
    expected = booster.predict(xgb.DMatrix(empty), output_margin=True)
    np.testing.assert_allclose(ensemble.margins(empty), expected, atol=1e-5)


def test_wrong_feature_count_is_refused(ensemble: TreeEnsemble) -> None:
    with pytest.raises(ValueError, match=f"expected {FEATURES} feature columns"):
        ensemble.margins(np.zeros((1, FEATURES - 1)))


def test_categorical_splits_are_refused(booster: xgb.Booster) -> None:
    document: dict[str, Any] = json.loads(booster.save_raw("json"))
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["split_type"][0] = 1
    with pytest.raises(UnsupportedModelError, match="categorical"):
        TreeEnsemble.from_xgboost_json(document)


def test_other_objectives_are_refused(booster: xgb.Booster) -> None:
    document: dict[str, Any] = json.loads(booster.save_raw("json"))
    document["learner"]["objective"]["name"] = "reg:squarederror"
    with pytest.raises(UnsupportedModelError, match="binary:logistic"):
        TreeEnsemble.from_xgboost_json(document)


def test_values_just_below_a_threshold_compare_in_float32_as_xgboost_does(
    booster: xgb.Booster, ensemble: TreeEnsemble
) -> None:
    # The largest float64 below each threshold rounds to the threshold in float32, so xgboost
    # sends it right (x >= t); a float64 comparison would send it left.
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    splits = (zip(t["split_indices"], t["split_conditions"], t["left_children"], strict=True) for t in trees)
    thresholds = sorted({t for nodes in splits for f, t, left in nodes if f == 4 and left != -1})
    below = np.nextafter(np.asarray(thresholds, dtype=np.float32).astype(np.float64), -np.inf)
    assert np.all(below.astype(np.float32) == np.asarray(thresholds, dtype=np.float32))
    rows = np.tile(_data(2)[0][:1], (len(thresholds), 1))
    rows[:, 4] = below
    expected = booster.predict(xgb.DMatrix(rows), output_margin=True)
    np.testing.assert_allclose(ensemble.margins(rows), expected, atol=1e-5)
