"""`RiskModel` scores with the numpy tree ensemble, exactly as xgboost would, and without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clinrisk.data.splits import split_by_patient
from clinrisk.data.validation import ensure_valid
from clinrisk.model.risk_model import BOOSTER_FILE, RiskModel
from clinrisk.model.training import Hyperparameters, TrainedModel, train_model
from clinrisk.tasks.readmission.features import FEATURE_SCHEMA, build_features
from clinrisk.tasks.readmission.synth import generate_cohort


@pytest.fixture(scope="module")
def encounters() -> dict[str, pd.DataFrame]:
    frame = ensure_valid(generate_cohort(2500, seed=3))
    return split_by_patient(frame, seed=1, test=0.2, validation=0.2)


@pytest.fixture(scope="module")
def trained(encounters: dict[str, pd.DataFrame]) -> TrainedModel:
    return train_model(encounters["train"], encounters["validation"], Hyperparameters(num_round=80))


@pytest.fixture(scope="module")
def model_dir(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    trained.save(directory)
    return directory


def test_raw_probabilities_match_xgboost_within_1e_6(model_dir: Path, encounters: dict[str, pd.DataFrame]) -> None:
    features = build_features(encounters["test"])
    booster = xgb.Booster()
    booster.load_model(str(model_dir / BOOSTER_FILE))
    expected = booster.predict(xgb.DMatrix(features, feature_names=FEATURE_SCHEMA.names))

    ours = RiskModel.load(model_dir).raw_probability(features)

    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_a_fresh_booster_scores_as_its_saved_file(
    trained: TrainedModel, model_dir: Path, encounters: dict[str, pd.DataFrame]
) -> None:
    """Training picks the weighting and fits the calibration on these scores: they must be the
    very numbers evaluation and serving compute from model.json."""
    features = build_features(encounters["validation"])

    fresh = trained.risk_model().predict_features(features)

    np.testing.assert_array_equal(fresh, RiskModel.load(model_dir).predict_features(features))


def test_columns_are_scored_by_name_not_position(model_dir: Path, encounters: dict[str, pd.DataFrame]) -> None:
    features = build_features(encounters["test"])
    model = RiskModel.load(model_dir)

    shuffled = features[list(reversed(features.columns))]

    np.testing.assert_array_equal(model.predict_features(shuffled), model.predict_features(features))


def test_scoring_needs_no_xgboost_sklearn_or_scipy(model_dir: Path) -> None:
    script = (
        "import sys\n"
        "for name in ('xgboost', 'sklearn', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        "from pathlib import Path\n"
        "from clinrisk.model.risk_model import RiskModel\n"
        "from clinrisk.tasks.readmission.synth import generate_cohort\n"
        "from clinrisk.data.validation import ensure_valid\n"
        "scores = RiskModel.load(Path(sys.argv[1])).predict(ensure_valid(generate_cohort(50, seed=2)))\n"
        "print(len(scores), float(scores.min()) >= 0.0, float(scores.max()) <= 1.0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(model_dir)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50", "True", "True"]


def test_the_calibration_is_fitted_on_training_rows_not_the_early_stopping_rows(
    encounters: dict[str, pd.DataFrame],
) -> None:
    """The validation rows pick the tree count and the weighting; the calibration must not be
    fitted on them too (that made it over-confident). With both fixed, another validation
    channel must leave the calibration as it was."""
    hp = Hyperparameters(num_round=40, scale_pos_weight=4.0)  # inflated scores: a calibration is needed

    one = train_model(encounters["train"], encounters["validation"], hp)
    other = train_model(encounters["train"], encounters["test"], hp)

    assert one.summary.best_iteration == other.summary.best_iteration, "precondition: the same trees"
    assert one.calibrator.kind != "none", "precondition: a calibration was fitted"
    assert one.calibrator == other.calibrator
    assert one.summary.calibration.rows == one.summary.train_rows
