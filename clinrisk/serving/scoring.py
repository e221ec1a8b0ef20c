"""Scoring for serving: one loaded model turns encounters into probabilities, bands and factors.

Real-time requests and batch files both come through `ServingModel.score`, on top of the one
feature implementation (`clinrisk.tasks.readmission.features.feature_matrix`), so an encounter gets the same
answer wherever it is scored. Only numpy and pydantic are needed: no pandas, xgboost or
scipy, which keeps the predict Lambda small (see `clinrisk.model.tree_ensemble`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, TypeAdapter

from clinrisk.model.risk_model import (
    BOOSTER_FILE,
    CALIBRATOR_FILE,
    SUMMARY_FILE,
    Calibrator,
    checked_feature_schema,
    sigmoid,
)
from clinrisk.model.tree_ensemble import TreeEnsemble
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.factors import FACTORS, Factor, factor_membership
from clinrisk.tasks.readmission.features import PRIOR_ENCOUNTERS, SOURCE_COLUMNS, feature_matrix

RiskBand = Literal["low", "medium", "high"]


class RiskFactor(BaseModel):
    factor: str = Field(description="The input field (or group of fields) the factor stands for.")
    label: str
    value: str = Field(description="The field's value in this encounter, as entered.")
    contribution: float = Field(description="SHAP contribution to the log-odds of readmission (exact TreeSHAP).")
    direction: Literal["increases", "decreases"]


class Scored(BaseModel):
    probability: float = Field(ge=0.0, le=1.0, description="Calibrated probability of readmission within 30 days.")
    band: RiskBand
    factors: list[RiskFactor]


@dataclass(frozen=True)
class Bands:
    """`high` from the operating threshold the model was evaluated at; `medium` from a lower cut."""

    medium_from: float
    high_from: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Bands:
        return cls(medium_from=settings.serving.medium_risk_from, high_from=settings.operating_threshold)

    def of(self, probabilities: npt.NDArray[np.float64]) -> list[RiskBand]:
        return ["high" if p >= self.high_from else "medium" if p >= self.medium_from else "low" for p in probabilities]


def _columns(records: Sequence[Mapping[str, Any]], prior_encounters: Sequence[int]) -> dict[str, np.ndarray]:
    columns = {name: np.array([r.get(name) for r in records], dtype=object) for name in SOURCE_COLUMNS}
    columns[PRIOR_ENCOUNTERS] = np.asarray(prior_encounters, dtype=float)
    return columns


@dataclass(frozen=True)
class ServingModel:
    """A registered model version loaded for serving."""

    name: str
    version: int
    checksum: str
    ensemble: TreeEnsemble
    calibrator: Calibrator
    summary: dict[str, Any]
    _factor_of_feature: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.argmax(factor_membership(), axis=1), repr=False
    )

    @classmethod
    def load(cls, directory: Path, *, name: str, version: int, checksum: str) -> ServingModel:
        checked_feature_schema(directory)
        summary_path = directory / SUMMARY_FILE
        return cls(
            name=name,
            version=version,
            checksum=checksum,
            ensemble=TreeEnsemble.from_xgboost_json(json.loads((directory / BOOSTER_FILE).read_text())),
            calibrator=Calibrator.model_validate_json((directory / CALIBRATOR_FILE).read_text()),
            summary=json.loads(summary_path.read_text()) if summary_path.is_file() else {},
        )

    def probabilities(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.calibrator.apply(sigmoid(self.ensemble.margins(features)))

    def score(
        self, records: Sequence[Mapping[str, Any]], prior_encounters: Sequence[int], *, bands: Bands, top_k: int
    ) -> list[Scored]:
        """Score validated encounters (dicts keyed by UCI column names) with their top-k factors.
        `top_k=0` skips the explanation (batch scoring without factors)."""

        def factor(row: int, index: int, contribution: float) -> dict[str, Any]:
            return _factor(FACTORS[index], records[row], prior_encounters[row], contribution)

        features = feature_matrix(_columns(records, prior_encounters))
        return score_features(
            self.ensemble, self.calibrator, features, factor_of_feature=self._factor_of_feature,
            factors=len(FACTORS), bands=bands, top_k=top_k, factor=factor,
        )  # fmt: skip


def score_features(
    ensemble: TreeEnsemble,
    calibrator: Calibrator,
    features: npt.NDArray[np.float64],
    *,
    factor_of_feature: npt.NDArray[np.int64],
    factors: int,
    bands: Bands,
    top_k: int,
    factor: Callable[[int, int, float], dict[str, Any]],
) -> list[Scored]:
    """The one scoring path of every task: calibrated probabilities, bands and each row's top-k
    factors from a feature matrix. A task gives its features, which factor each feature belongs to
    and how a factor reads (`factor(row, factor index, contribution)`, a `RiskFactor` as a dict)."""
    if top_k == 0:
        probabilities = calibrator.apply(sigmoid(ensemble.margins(features)))
        return [
            Scored(probability=p, band=b, factors=[])
            for p, b in zip(probabilities, bands.of(probabilities), strict=True)
        ]
    contributions = ensemble.contributions(features)
    margins = contributions.sum(axis=1)  # local accuracy: the contributions add up to the margin
    probabilities = calibrator.apply(sigmoid(margins))
    by_factor = by_factor_sums(contributions[:, :-1], factor_of_feature, factors)
    # Largest |contribution| first, ties in factor order: the same stable sort for every row
    # of the batch at once, so a row gets the factors it would get scored alone.
    top = np.argsort(-np.abs(by_factor), axis=1, kind="stable")[:, :top_k]
    chosen = np.take_along_axis(by_factor, top, axis=1).tolist()
    scored = [
        {
            "probability": p,
            "band": band,
            "factors": [factor(row, i, c) for i, c in zip(indices, values, strict=True)],
        }
        for row, (p, band, indices, values) in enumerate(
            zip(probabilities.tolist(), bands.of(probabilities), top.tolist(), chosen, strict=True)
        )
    ]
    return _SCORED.validate_python(scored)  # one validation for the whole batch


_SCORED = TypeAdapter(list[Scored])


def by_factor_sums(
    contributions: npt.NDArray[np.float64], factor_of_feature: npt.NDArray[np.int64], factors: int
) -> npt.NDArray[np.float64]:
    """Each factor's contribution: the sum of its features', added in feature order for every row.
    (A matrix product would add them in an order that depends on the number of rows, so a row's
    factors could differ in the last bits, and tie differently, by the batch it came in.)"""
    rows = contributions.shape[0]
    index = np.arange(rows)[:, None] * factors + factor_of_feature
    summed = np.bincount(index.ravel(), weights=contributions.ravel(), minlength=rows * factors)
    return np.asarray(summed, dtype=np.float64).reshape(rows, factors)


def _factor(factor: Factor, record: Mapping[str, Any], prior: int, contribution: float) -> dict[str, Any]:
    """A `RiskFactor`, as the dict `_SCORED` validates."""
    return {
        "factor": factor.name,
        "label": factor.label,
        "value": factor.describe(record, prior),
        "contribution": contribution,
        "direction": "increases" if contribution > 0 else "decreases",
    }
