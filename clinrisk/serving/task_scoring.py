"""Scoring for a task made from its task file alone (heart disease, a task `clinrisk task init` drafted).

The feature row of a record is built here with numpy, as `clinrisk.taskspec.features.feature_matrix`
builds it from a validated frame in training: numeric and boolean values as numbers (missing NaN),
each categorical column one 0/1 column per declared code. Factors are the declared columns: a
categorical column's contribution is the sum of its codes' columns. No pandas or xgboost, so the
predict Lambda serves every task with the bundle it has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clinrisk.model.risk_model import (
    BOOSTER_FILE,
    CALIBRATOR_FILE,
    FEATURE_SCHEMA_FILE,
    Calibrator,
    ModelArtifactError,
)
from clinrisk.model.tree_ensemble import TreeEnsemble
from clinrisk.serving.scoring import Bands, Scored, score_features
from clinrisk.settings import Settings
from clinrisk.taskspec.features import feature_names
from clinrisk.taskspec.spec import (
    BooleanColumn,
    CategoricalColumn,
    NumericColumn,
    TaskSpec,
    normalise_code,
)


def task_bands(settings: Settings, spec: TaskSpec) -> Bands:
    """The task's bands: `high` from its operating threshold, `medium` at the same share of it as the
    settings' medium cut is of theirs (as `GenericTask.settings` sets them for evaluation)."""
    high = spec.operating_threshold or settings.operating_threshold
    return Bands(medium_from=settings.serving.medium_risk_from / settings.operating_threshold * high, high_from=high)


def feature_rows(spec: TaskSpec, records: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
    """The model input of `records` (fields named as the task's columns; absent or None: missing)."""
    parts: list[npt.NDArray[np.float64]] = []
    for column in spec.feature_columns:
        values = [record.get(column.name) for record in records]
        if isinstance(column, CategoricalColumn):
            codes = np.array([None if v is None else normalise_code(v) for v in values], dtype=object)
            parts += [(codes == code).astype(np.float64) for code in column.codes]
        else:
            parts.append(np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64))
    return np.column_stack(parts) if parts else np.empty((len(records), 0))


def _value_text(column: NumericColumn | CategoricalColumn | BooleanColumn, value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(column, CategoricalColumn):
        code = normalise_code(value)
        return f"{code} ({column.codes.get(code, '?')})"
    if isinstance(column, BooleanColumn):
        return "yes" if value else "no"
    unit = "" if column.unit == "1" else f" {column.unit}"
    return f"{normalise_code(value)}{unit}"


@dataclass(frozen=True)
class TaskServingModel:
    """A registered model version of a generic task, loaded for serving."""

    name: str
    version: int
    checksum: str
    spec: TaskSpec
    ensemble: TreeEnsemble
    calibrator: Calibrator
    factor_of_feature: npt.NDArray[np.int64]

    @classmethod
    def load(cls, directory: Path, *, spec: TaskSpec, name: str, version: int, checksum: str) -> TaskServingModel:
        """The model in `directory`, checked to be trained on exactly the features `spec` declares."""
        missing = [f for f in (BOOSTER_FILE, CALIBRATOR_FILE, FEATURE_SCHEMA_FILE) if not (directory / f).is_file()]
        if missing:
            raise ModelArtifactError(f"model directory {directory} lacks {', '.join(missing)}")
        saved = [f["name"] for f in json.loads((directory / FEATURE_SCHEMA_FILE).read_text())["features"]]
        expected = feature_names(spec)
        if saved != expected:
            raise ModelArtifactError(
                f"model {name} version {version} was trained on other features than task {spec.name!r} declares"
            )
        column_of = {feature: i for i, column in enumerate(spec.feature_columns) for feature in _features(column)}
        return cls(
            name=name,
            version=version,
            checksum=checksum,
            spec=spec,
            ensemble=TreeEnsemble.from_xgboost_json(json.loads((directory / BOOSTER_FILE).read_text())),
            calibrator=Calibrator.model_validate_json((directory / CALIBRATOR_FILE).read_text()),
            factor_of_feature=np.array([column_of[f] for f in expected], dtype=np.int64),
        )

    def score(self, records: Sequence[Mapping[str, Any]], *, bands: Bands, top_k: int) -> list[Scored]:
        """Probabilities, bands and the top-k factors (declared columns) of validated records."""
        columns = self.spec.feature_columns

        def factor(row: int, index: int, contribution: float) -> dict[str, Any]:
            return _factor(columns[index], records[row].get(columns[index].name), contribution)

        return score_features(
            self.ensemble, self.calibrator, feature_rows(self.spec, records),
            factor_of_feature=self.factor_of_feature, factors=len(columns), bands=bands, top_k=top_k, factor=factor,
        )  # fmt: skip


def _features(column: NumericColumn | CategoricalColumn | BooleanColumn) -> list[str]:
    return (
        [f"{column.name}={code}" for code in column.codes] if isinstance(column, CategoricalColumn) else [column.name]
    )


def _factor(
    column: NumericColumn | CategoricalColumn | BooleanColumn, value: Any, contribution: float
) -> dict[str, Any]:
    return {
        "factor": column.name,
        "label": column.description or column.name,
        "value": _value_text(column, value),
        "contribution": contribution,
        "direction": "increases" if contribution > 0 else "decreases",
    }
