"""Similar past patients: Wilson intervals, aggregates only, and the local HNSW index finding the
neighbours that are really near."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinrisk.adapters.local_similar import LocalSimilarPatientIndex
from clinrisk.explain.ports import IndexUnavailableError
from clinrisk.explain.similar import MIN_NEIGHBOURS, SimilarPatients, summarise, wilson_interval
from clinrisk.explain.similar_index import SimilarRows


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    # Reference values from the closed form (Wilson 1927), as given by statsmodels' proportion_confint(method="wilson").
    [(0, 20, 0.0, 0.16113), (10, 20, 0.29930, 0.70070), (3, 50, 0.02062, 0.16217), (50, 50, 0.92865, 1.0)],
)
def test_wilson_interval(successes: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-4)


def test_an_aggregate_needs_at_least_twenty_neighbours() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        summarise([0] * (MIN_NEIGHBOURS - 1), {}, model_version=1)


def test_rare_values_are_merged_so_no_small_group_is_singled_out() -> None:
    ages = ["[70-80)"] * 15 + ["[80-90)"] * 3 + ["[20-30)"] * 2
    summary = summarise([1] * 5 + [0] * 15, {"age": ages}, model_version=3)
    assert summary.distributions == {"age": {"[70-80)": 15, "other": 5}}
    assert (summary.k, summary.readmitted, summary.outcome_rate) == (20, 5, 0.25)


def test_the_aggregate_has_no_field_for_a_record() -> None:
    assert set(SimilarPatients.model_fields) == {
        "k",
        "readmitted",
        "outcome_rate",
        "rate_ci_low",
        "rate_ci_high",
        "distributions",
        "model_version",
    }


def _two_clusters(n: int = 2000) -> SimilarRows:
    """Encounters near +1 all readmitted, near -1 none; 28 dimensions like the factor vectors."""
    rng = np.random.default_rng(0)
    centre = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    vectors = (centre[:, None] + rng.normal(0, 0.1, (n, 28))).astype(np.float32)
    outcomes = (centre > 0).astype(np.int8)
    fields = {"age": np.where(centre > 0, "[80-90)", "[40-50)")}
    return SimilarRows(vectors=vectors, outcomes=outcomes, fields=fields)


def test_the_local_index_aggregates_the_nearest_encounters(tmp_path: Path) -> None:
    index = LocalSimilarPatientIndex(tmp_path)
    index.write(4, _two_clusters())
    near_readmitted = index.summarise([0.95] * 28, model_version=4, k=30)
    near_not = LocalSimilarPatientIndex(tmp_path).summarise([-1.0] * 28, model_version=4, k=30)
    assert (near_readmitted.k, near_readmitted.outcome_rate, near_readmitted.distributions) == (
        30,
        1.0,
        {"age": {"[80-90)": 30}},
    )
    assert near_not.outcome_rate == 0.0 and near_not.rate_ci_high < 0.12


def test_a_version_without_an_index_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailableError):
        LocalSimilarPatientIndex(tmp_path).summarise([0.0] * 28, model_version=9, k=20)
