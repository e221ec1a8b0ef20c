"""A monitoring reference and capture tables made from the synthetic cohort, without a trained
model: scores come from the cohort's true readmission probability, which is calibrated by
construction, and the attribution from a fixed factor list."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from clinrisk.capture.local_sink import scored_table
from clinrisk.capture.records import FIELD_COLUMNS
from clinrisk.monitoring.fields import PRIOR_FIELD
from clinrisk.monitoring.reference import MonitoringReference, build_reference
from clinrisk.serving.scoring import Bands, RiskFactor, Scored
from clinrisk.tasks.readmission.features import prior_encounter_counts
from clinrisk.tasks.readmission.synth import true_readmission_probability

BANDS = Bands(medium_from=0.1, high_from=0.2)
FACTORS = [("number_inpatient", 0.3), ("age", 0.2), ("discharge_disposition_id", -0.1)]


def scored_of(frame: pd.DataFrame) -> list[Scored]:
    probabilities = true_readmission_probability(frame)
    return [
        Scored(
            probability=float(p),
            band=band,
            factors=[
                RiskFactor(factor=n, label=n, value="", contribution=c, direction="increases" if c > 0 else "decreases")
                for n, c in FACTORS
            ],
        )
        for p, band in zip(probabilities, BANDS.of(probabilities), strict=True)
    ]


def records_of(frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[int]]:
    clean = frame.drop(columns=["readmitted"], errors="ignore").astype(object).where(frame.notna(), None)
    records = [{str(k): v for k, v in row.items()} for row in clean.to_dict("records")]
    return records, prior_encounter_counts(frame).astype(int).tolist()


def reference_of(frame: pd.DataFrame) -> MonitoringReference:
    records, priors = records_of(frame)
    columns: dict[str, list[Any]] = {spec.name: [r.get(spec.name) for r in records] for spec in FIELD_COLUMNS.values()}
    columns[PRIOR_FIELD] = priors
    return build_reference(columns, scored_of(frame), high_from=BANDS.high_from)


def capture_table(frame: pd.DataFrame, *, version: int = 1, at: float = 1.8e9) -> pa.Table:
    records, priors = records_of(frame)
    common = {"task": "readmission", "model_version": version, "date": "2027-01-15", "captured_at": at,
              "request_id": "r", "source": "api", "role": "answer"}  # fmt: skip
    return scored_table(records, priors, scored_of(frame), common=common)


def numbers(values: list[Any]) -> np.ndarray:
    return np.asarray(values, dtype=float)
