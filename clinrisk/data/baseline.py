"""Training-baseline statistics, saved beside the model so a later drift check can compare
recent inputs and scores with what the model was trained on (PSI per feature, score drift).

Distributions are binned on training-set quantiles; the first and last bins are open, so
any future value lands in a bin. Missing values get a bin of their own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

_BINS = 10
_PSI_FLOOR = 1e-4  # keeps log() finite when a bin is empty on one side


class Distribution(BaseModel):
    """Proportions of values in bins. `edges` are the inner cut points; `missing` the NaN share."""

    edges: list[float]
    proportions: list[float]
    missing: float
    mean: float | None

    @classmethod
    def of(cls, values: np.ndarray, edges: np.ndarray | None = None) -> Distribution:
        values = np.asarray(values, dtype=float)
        present = values[~np.isnan(values)]
        if edges is None:
            edges = (
                np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1)[1:-1])) if present.size else np.array([])
            )
        counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        total = max(present.size, 1)
        return cls(
            edges=[float(e) for e in edges],
            proportions=(counts / total).tolist(),
            missing=float(np.isnan(values).mean()) if values.size else 0.0,
            mean=float(present.mean()) if present.size else None,
        )

    def psi(self, values: np.ndarray) -> float:
        """Population stability index of `values` against this distribution (same bins)."""
        current = Distribution.of(values, np.asarray(self.edges))
        expected = np.clip(np.asarray(self.proportions), _PSI_FLOOR, None)
        actual = np.clip(np.asarray(current.proportions), _PSI_FLOOR, None)
        return float(np.sum((actual - expected) * np.log(actual / expected)))


class TrainingBaseline(BaseModel):
    rows: int
    features: dict[str, Distribution]
    score: Distribution


def training_baseline(features: pd.DataFrame, validation_scores: np.ndarray) -> TrainingBaseline:
    """Feature distributions of the training rows; score distribution of the (held-out)
    validation rows, which is what serving will see when nothing has drifted."""
    return TrainingBaseline(
        rows=len(features),
        features={name: Distribution.of(features[name].to_numpy(dtype=float)) for name in features.columns},
        score=Distribution.of(validation_scores),
    )
