from __future__ import annotations

import numpy as np
import pandas as pd

from clinrisk.data.baseline import Distribution, training_baseline


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = Distribution.of(rng.normal(0, 1, 20_000))
    assert reference.psi(rng.normal(0, 1, 20_000)) < 0.01
    assert reference.psi(rng.normal(1, 1, 20_000)) > 0.25  # the usual "major shift" line


def test_values_beyond_the_training_range_land_in_the_open_end_bins() -> None:
    reference = Distribution.of(np.arange(100, dtype=float))
    current = Distribution.of(np.array([-1e9, 1e9]), np.asarray(reference.edges))
    assert current.proportions[0] == 0.5
    assert current.proportions[-1] == 0.5


def test_missing_share_and_baseline_shape() -> None:
    features = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [0.0, 0.0, 1.0, 1.0]})
    baseline = training_baseline(features, np.array([0.1, 0.2, 0.3]))
    assert baseline.rows == 4
    assert baseline.features["a"].missing == 0.25
    assert abs(sum(baseline.features["b"].proportions) - 1.0) < 1e-9
    assert baseline.score.mean is not None
    assert abs(baseline.score.mean - 0.2) < 1e-9
