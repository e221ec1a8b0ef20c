"""The HTML report is one self-contained file: every plot inline, nothing fetched from elsewhere."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np

from clinrisk.monitoring.monitor import monitor_window
from clinrisk.monitoring.report import DailyPerformance, render_report
from clinrisk.settings import MonitoringRules
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.unit.monitoring.helpers import capture_table, reference_of

WINDOW = (datetime(2027, 1, 15, tzinfo=UTC), datetime(2027, 1, 16, tzinfo=UTC))


def test_the_report_is_self_contained_and_names_the_drifted_field() -> None:
    frame = SHIFTS["coding_change"](generate_cohort(1200, seed=4), np.random.default_rng(0))
    result = monitor_window(
        capture_table(frame), reference_of(generate_cohort(2000, seed=3)), MonitoringRules(), task="readmission",
        version=2, window=WINDOW,
    )  # fmt: skip
    days = [DailyPerformance(day="2027-01-15", records=1200, estimated_auc=0.71, realized_auc=0.69, outcomes=800)]
    page = render_report(result, days, threshold=0.25, generated=WINDOW[1])
    assert page.startswith("<!doctype html>") and "model v2" in page
    images = re.findall(r'<img alt="" src="data:image/png;base64,', page)
    assert len(images) == 1 + 4 + 1 + 1 + 3  # PSI, four fields, scores, AUC per day, three subgroups
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page
    assert "diag_1: PSI" not in page  # titles are inside the images; the tiles name the field
    assert "Drifted fields" in page and "diag_1" in page


def test_an_unpublished_window_says_why() -> None:
    result = monitor_window(
        capture_table(generate_cohort(100, seed=4)), reference_of(generate_cohort(2000, seed=3)), MonitoringRules(),
        task="readmission", version=2, window=WINDOW,
    )  # fmt: skip
    page = render_report(result, [], threshold=0.25, generated=WINDOW[1])
    assert "Nothing to show" in page and "fewer than 500" in page
