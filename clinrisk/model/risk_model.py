"""A trained readmission model as files in a directory, and the code that scores with it.

The directory is what the SageMaker training job writes to `SM_MODEL_DIR` and what MLflow
stores as the model's artifacts:

    model.json            XGBoost booster (JSON, portable across xgboost versions)
    calibrator.json       the probability calibration chosen at training time
    feature_schema.json   the feature names, in column order, and their fingerprint
    baseline.json         training-baseline statistics for drift checks
    logistic_baseline.json  the logistic-regression baseline, for comparison
    training_summary.json   hyperparameters, best iteration, validation metrics, timings

Scoring never needs xgboost: `RiskModel` reads `model.json` into a `TreeEnsemble` and scores
in numpy, exactly as serving does (`clinrisk.serving.scoring`), so training, evaluation and serving
share one scorer and the evaluate Lambda ships without xgboost and scipy. Only fitting the
booster (`clinrisk.model.training`) imports xgboost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from clinrisk.errors import ClinriskError
from clinrisk.model.tree_ensemble import TreeEnsemble
from clinrisk.tasks.readmission.features import FEATURE_SCHEMA, FeatureSchema, build_features

if TYPE_CHECKING:  # the serving path loads calibrators from here and must not import pandas
    import pandas as pd

BOOSTER_FILE = "model.json"
CALIBRATOR_FILE = "calibrator.json"
FEATURE_SCHEMA_FILE = "feature_schema.json"
BASELINE_FILE = "baseline.json"
LOGISTIC_FILE = "logistic_baseline.json"
SUMMARY_FILE = "training_summary.json"

_EPS = 1e-6


class ModelArtifactError(ClinriskError):
    """A model directory is incomplete, or was trained on other features than this code builds."""


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(clipped / (1 - clipped)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


class Calibrator(BaseModel):
    """Maps the booster's raw probability to a calibrated one.

    `platt` is a logistic fit on the raw logit (two numbers); `isotonic` is a monotone step
    function stored as knots and applied by linear interpolation. Both are plain data, so a
    serving process needs neither scikit-learn nor pickle.
    """

    kind: Literal["none", "platt", "isotonic"] = "none"
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: list[float] = []
    knots_y: list[float] = []

    def apply(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "platt":
            return sigmoid(self.slope * logit(raw) + self.intercept)
        if self.kind == "isotonic":
            return np.asarray(np.interp(raw, self.knots_x, self.knots_y))
        return raw


class LogisticBaseline(BaseModel):
    """Standardised logistic regression over the same features (missing → training mean)."""

    features: list[str]
    means: list[float]
    scales: list[float]
    coefficients: list[float]
    intercept: float

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        x = features[self.features].to_numpy(dtype=float)
        means = np.asarray(self.means)
        x = np.where(np.isnan(x), means, x)
        z = ((x - means) / np.asarray(self.scales)) @ np.asarray(self.coefficients) + self.intercept
        return sigmoid(z)


def checked_feature_schema(directory: Path, expected: FeatureSchema = FEATURE_SCHEMA) -> FeatureSchema:
    """The schema saved with a model, after checking the directory has the files every scorer
    needs and was trained on exactly the features this code builds (`expected`: its task's;
    readmission's by default)."""
    missing = [f for f in (BOOSTER_FILE, CALIBRATOR_FILE, FEATURE_SCHEMA_FILE) if not (directory / f).is_file()]
    if missing:
        raise ModelArtifactError(f"model directory {directory} lacks {', '.join(missing)}")
    schema = FeatureSchema.model_validate_json((directory / FEATURE_SCHEMA_FILE).read_text())
    if schema.fingerprint != expected.fingerprint:
        raise ModelArtifactError(
            f"model in {directory} was trained on feature schema {schema.fingerprint}, "
            f"but this code builds {expected.fingerprint}"
        )
    return schema


@dataclass(frozen=True)
class RiskModel:
    """The trees and their calibrator, checked against the features this code builds."""

    ensemble: TreeEnsemble
    calibrator: Calibrator
    schema: FeatureSchema

    @classmethod
    def load(cls, directory: Path, expected: FeatureSchema = FEATURE_SCHEMA) -> RiskModel:
        schema = checked_feature_schema(directory, expected)
        ensemble = TreeEnsemble.from_xgboost_json(json.loads((directory / BOOSTER_FILE).read_text()))
        calibrator = Calibrator.model_validate_json((directory / CALIBRATOR_FILE).read_text())
        return cls(ensemble=ensemble, calibrator=calibrator, schema=schema)

    @classmethod
    def from_booster(
        cls, booster: object, calibrator: Calibrator | None = None, schema: FeatureSchema = FEATURE_SCHEMA
    ) -> RiskModel:
        """A booster just fitted by xgboost, read through the same JSON that `model.json` holds,
        so training scores exactly what evaluation and serving will."""
        document = json.loads(bytes(booster.save_raw(raw_format="json")))  # type: ignore[attr-defined]
        return cls(
            ensemble=TreeEnsemble.from_xgboost_json(document),
            calibrator=calibrator or Calibrator(),
            schema=schema,
        )

    def raw_probability(self, features: pd.DataFrame) -> np.ndarray:
        """The booster's uncalibrated probability, one per row of `features` (NaN = missing)."""
        return sigmoid(self.ensemble.margins(features[self.schema.names].to_numpy(dtype=np.float64)))

    def predict_features(self, features: pd.DataFrame) -> np.ndarray:
        return self.calibrator.apply(self.raw_probability(features))

    def predict(self, encounters: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """Calibrated probability of readmission within 30 days, one per encounter."""
        return self.predict_features(build_features(encounters, history))


def write_json(path: Path, model: BaseModel | dict[str, object]) -> None:
    text = model.model_dump_json(indent=2) if isinstance(model, BaseModel) else json.dumps(model, indent=2)
    path.write_text(text + "\n")
