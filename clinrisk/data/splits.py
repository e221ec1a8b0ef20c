"""Patient-grouped splits: no patient has encounters in two of train, validation and test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinrisk.tasks.readmission.schema import PATIENT_ID

CHANNELS: tuple[str, ...] = ("train", "validation", "test")


def split_by_patient(frame: pd.DataFrame, *, seed: int, test: float, validation: float) -> dict[str, pd.DataFrame]:
    """Each patient goes to one split, with probabilities `test`, `validation` and the rest to
    train; seeded, so the same file and seed give the same split."""
    patients = np.sort(frame[PATIENT_ID].unique())
    draw = np.random.default_rng(seed).random(patients.size)
    channel = np.where(draw < test, "test", np.where(draw < test + validation, "validation", "train"))
    assignment = pd.Series(channel, index=patients).reindex(frame[PATIENT_ID].to_numpy()).to_numpy()
    return {name: frame[assignment == name].reset_index(drop=True) for name in CHANNELS}
