"""Named shifts of the synthetic cohort (`clinrisk.tasks.readmission.synth`): how the world changes in the
benchmark, the tests and `clinrisk simulate traffic`. Each takes a canonical frame and returns
a changed copy; the outcome column is left as generated (these are covariate shifts).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from clinrisk.tasks.readmission.features import icd9_group
from clinrisk.tasks.readmission.schema import AGE_BANDS

Shift = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]

HOME = 1
SKILLED_NURSING = 3
RECODED_DIABETES = "V58.67"  # "long-term use of insulin", a V code: the diabetes group loses these encounters


def older(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """An older population: half the encounters move up one or two age bands."""
    out = frame.copy()
    index = pd.Series(out["age"]).map({band: i for i, band in enumerate(AGE_BANDS)}).to_numpy()
    step = rng.choice([0, 1, 2], size=len(out), p=[0.5, 0.3, 0.2])
    out["age"] = [AGE_BANDS[i] for i in np.minimum(index + step, len(AGE_BANDS) - 1)]
    return out


def skilled_nursing(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A change in discharge practice: half the discharges home now go to skilled nursing."""
    out = frame.copy()
    moved = (out["discharge_disposition_id"].to_numpy() == HOME) & (rng.random(len(out)) < 0.5)
    out.loc[moved, "discharge_disposition_id"] = SKILLED_NURSING
    return out


def coding_change(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A coding change in one diagnosis group: primary diabetes diagnoses (250.x) are coded V58.67."""
    out = frame.copy()
    diabetes = np.asarray(icd9_group(out["diag_1"].where(out["diag_1"].notna(), None).tolist())) == "diabetes"
    out.loc[diabetes, "diag_1"] = RECODED_DIABETES
    return out


def lab_missing(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A lab newly missing: HbA1c results stop arriving (every encounter reads "None", not measured)."""
    out = frame.copy()
    out["A1Cresult"] = "None"
    return out


SHIFTS: dict[str, Shift] = {
    "none": lambda frame, rng: frame.copy(),
    "older": older,
    "skilled_nursing": skilled_nursing,
    "coding_change": coding_change,
    "lab_missing": lab_missing,
}
