"""The monitor on synthetic windows: quiet on the training distribution, loud on the named shifts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from clinrisk.monitoring.monitor import emf_records, monitor_window
from clinrisk.settings import MonitoringRules
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.unit.monitoring.helpers import capture_table, reference_of

WINDOW = (datetime(2027, 1, 15, tzinfo=UTC), datetime(2027, 1, 16, tzinfo=UTC))
RULES = MonitoringRules()


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return reference_of(generate_cohort(4000, seed=1))


def _run(reference, frame, **kwargs):  # type: ignore[no-untyped-def]
    return monitor_window(
        capture_table(frame), reference, RULES, task="readmission", version=1, window=WINDOW, **kwargs
    )


def test_a_window_from_the_training_distribution_shows_no_drift(reference) -> None:  # type: ignore[no-untyped-def]
    result = _run(reference, generate_cohort(2000, seed=2))
    assert result.published and result.drifted_fields == []
    assert result.feature_drift is not None and result.feature_drift < RULES.psi_threshold
    assert result.attribution_ndcg == pytest.approx(1.0)
    assert result.high_risk_rate is not None and result.expected_high_risk_rate is not None
    assert abs(result.high_risk_rate - result.expected_high_risk_rate) < 0.03


@pytest.mark.parametrize(
    ("shift", "field"),
    [("older", "age"), ("skilled_nursing", "discharge_disposition_id"), ("coding_change", "diag_1"),
     ("lab_missing", "A1Cresult")],
)  # fmt: skip
def test_each_named_shift_is_caught_in_its_own_field(reference, shift: str, field: str) -> None:  # type: ignore[no-untyped-def]
    frame = SHIFTS[shift](generate_cohort(2000, seed=2), np.random.default_rng(0))
    result = _run(reference, frame)
    assert result.drifted_fields[:1] == [field]


def test_a_lab_newly_missing_shows_in_its_shares(reference) -> None:  # type: ignore[no-untyped-def]
    result = _run(reference, SHIFTS["lab_missing"](generate_cohort(1000, seed=3), np.random.default_rng(0)))
    a1c = next(f for f in result.fields if f.field == "A1Cresult")
    assert a1c.current_shares[a1c.labels.index("None")] == pytest.approx(1.0)
    assert a1c.js_distance is not None and a1c.js_distance > 0.2


def test_a_small_window_publishes_nothing(reference) -> None:  # type: ignore[no-untyped-def]
    result = _run(reference, generate_cohort(RULES.min_window - 100, seed=4))
    assert not result.published and result.feature_drift is None
    assert emf_records(result, namespace="clinrisk", environment="dev", timestamp_ms=0, champion=True) == []


def test_emf_carries_feature_drift_for_the_existing_alarm_and_per_version(reference) -> None:  # type: ignore[no-untyped-def]
    result = _run(reference, SHIFTS["older"](generate_cohort(1000, seed=5), np.random.default_rng(0)))
    records = emf_records(result, namespace="clinrisk", environment="dev", timestamp_ms=1, champion=True)
    by_version, for_alarm = records[0], records[1]
    assert by_version["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["task", "model_version"]]
    assert (by_version["task"], by_version["model_version"]) == ("readmission", "1")
    assert for_alarm["Environment"] == "dev" and for_alarm["FeatureDrift"] == pytest.approx(result.feature_drift)
    # The series the task's retraining alarm watches: one per environment and task, across versions.
    assert for_alarm["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Environment", "Task"]]
    assert for_alarm["Task"] == "readmission"
    names = {m["Name"] for m in by_version["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"FeatureDrift", "ScoreDrift", "HighRiskRate", "AttributionNDCG", "EstimatedAUC"} <= names
