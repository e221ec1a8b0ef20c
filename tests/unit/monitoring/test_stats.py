"""The monitor's statistics, checked independently on the same data and bins, and the chi-square
noise level against simulation.

evidently was the intended cross-check, but its current release (0.7.23) fails to import beside
this project's pandas (it imports `infer_dtype_from_object`, which pandas 3 removed). So PSI is
re-derived here row by row, as evidently's `get_binned_data` + `_psi` compute it (shares of rows,
an empty bin set to 0.0001), and Jensen–Shannon comes from scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import distance
from scipy.stats import chi2
from sklearn.metrics import roc_auc_score

from clinrisk.monitoring.fields import FieldBins
from clinrisk.monitoring.monitor import field_drifts
from clinrisk.monitoring.reference import MonitoringReference
from clinrisk.monitoring.stats import chi2_quantile, expected_auc, js_distance, ndcg, psi, psi_critical
from clinrisk.settings import MonitoringRules
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.unit.monitoring.helpers import capture_table, records_of, reference_of

CHECKED_FIELDS = ("age", "A1Cresult", "num_lab_procedures", "discharge_disposition_id", "diag_1", "time_in_hospital")


def _row_bins(bins: FieldBins, values: list[object]) -> pd.Series:
    """Each row's bin, found one row at a time."""
    return pd.Series([int(np.argmax(bins.binned({v: 1}))) for v in values])


def _row_shares(rows: pd.Series, bins: int) -> np.ndarray:
    return rows.value_counts().reindex(range(bins), fill_value=0).to_numpy() / len(rows)


def _evidently_psi(reference: np.ndarray, current: np.ndarray) -> float:
    reference, current = np.where(reference == 0, 0.0001, reference), np.where(current == 0, 0.0001, current)
    return float(np.sum((reference - current) * np.log(reference / current)))


@pytest.fixture(scope="module")
def drifted() -> tuple[MonitoringReference, pd.DataFrame, pd.DataFrame]:
    reference_frame = generate_cohort(3000, seed=1)
    current = SHIFTS["older"](generate_cohort(1500, seed=2), np.random.default_rng(0))
    current = SHIFTS["lab_missing"](
        SHIFTS["coding_change"](current, np.random.default_rng(1)), np.random.default_rng(2)
    )
    return reference_of(reference_frame), reference_frame, current


@pytest.mark.parametrize("field", CHECKED_FIELDS)
def test_psi_and_jensen_shannon_match_a_row_by_row_count(drifted, field: str) -> None:  # type: ignore[no-untyped-def]
    reference, reference_frame, current = drifted
    ours = {d.field: d for d in field_drifts(capture_table(current), reference, MonitoringRules())}[field]
    bins = reference.fields[field]
    ref_rows = _row_bins(bins, [r.get(field) for r in records_of(reference_frame)[0]])
    cur_rows = _row_bins(bins, [r.get(field) for r in records_of(current)[0]])
    reference_shares, current_shares = _row_shares(ref_rows, bins.bins), _row_shares(cur_rows, bins.bins)
    assert ours.psi > 0.001  # shifted fields and bystanders with some noise are both compared
    assert ours.psi == pytest.approx(_evidently_psi(reference_shares, current_shares), rel=1e-6)
    assert js_distance(ours.reference_shares, ours.current_shares) == pytest.approx(
        distance.jensenshannon(reference_shares, current_shares), rel=1e-6
    )


def test_jensen_shannon_matches_scipy() -> None:
    p, q = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.1, 0.1, 0.4, 0.4])
    assert js_distance(p, q) == pytest.approx(distance.jensenshannon(p, q))
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("df", "probability"), [(2, 0.99), (9, 0.999), (29, 0.9999), (10, 0.95)])
def test_wilson_hilferty_is_close_to_the_chi_square_quantile(df: int, probability: float) -> None:
    assert chi2_quantile(df, probability) == pytest.approx(chi2.ppf(probability, df), rel=0.02)


def test_same_distribution_psi_exceeds_the_critical_value_about_alpha_of_the_time() -> None:
    """Simulated windows from one 10-bin distribution: the share above psi_critical is near alpha."""
    rng = np.random.default_rng(0)
    shares = np.full(10, 0.1)
    reference = rng.multinomial(4000, shares) / 4000
    alpha, windows, size = 0.05, 2000, 500
    critical = psi_critical(10, 4000, size, alpha)
    exceed = np.mean([psi(reference, rng.multinomial(size, shares) / size) > critical for _ in range(windows)])
    assert exceed == pytest.approx(alpha, abs=0.025)
    # and a fixed threshold fit for 500 rows is wrong for 50: the noise level grows as windows shrink
    assert psi_critical(10, 4000, 50, alpha) > 8 * critical


def test_cbpe_expected_auc_matches_realized_auc_of_calibrated_labels() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(1, 6, size=20_000)
    realized = [roc_auc_score(rng.random(p.size) < p, p) for _ in range(20)]
    assert expected_auc(p) == pytest.approx(float(np.mean(realized)), abs=0.004)


def test_cbpe_counts_ties_half() -> None:
    assert expected_auc([0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_ndcg_is_one_for_the_same_ranking_and_drops_when_the_top_changes() -> None:
    reference = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05}
    assert ndcg(reference, {"a": 5.0, "b": 3.0, "c": 1.0, "d": 0.0}, k=3) == pytest.approx(1.0)
    swapped = ndcg(reference, {"d": 1.0, "c": 0.9, "b": 0.5, "a": 0.1}, k=3)
    expected = (0.05 / 1 + 0.1 / math.log2(3) + 0.3 / 2) / (0.5 / 1 + 0.3 / math.log2(3) + 0.1 / 2)
    assert swapped == pytest.approx(expected)
