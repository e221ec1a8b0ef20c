"""The held-out test patients scored by the candidate, its logistic baseline and the champion,
on the very same rows; `clinrisk.evaluation.evaluate` turns the scores into the report."""

from __future__ import annotations

from pathlib import Path

from clinrisk.data.task_port import Examples
from clinrisk.evaluation.evaluate import ScoredTestSet
from clinrisk.model.risk_model import LOGISTIC_FILE, LogisticBaseline, RiskModel
from clinrisk.tasks.readmission.features import FEATURE_SCHEMA, FeatureSchema


def score_test_set(
    test: Examples, model_dir: Path, champion: RiskModel | None, schema: FeatureSchema = FEATURE_SCHEMA
) -> ScoredTestSet:
    logistic = LogisticBaseline.model_validate_json((model_dir / LOGISTIC_FILE).read_text())
    return ScoredTestSet(
        test=test,
        candidate=RiskModel.load(model_dir, schema).predict_features(test.features),
        logistic=logistic.predict(test.features),
        champion=None if champion is None else champion.predict_features(test.features),
    )
