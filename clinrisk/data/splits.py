"""Group-wise splits: no group (the patient) has rows in two of train, validation and test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinrisk.tasks.readmission.schema import PATIENT_ID

CHANNELS: tuple[str, ...] = ("train", "validation", "test")


def split_by_group(
    frame: pd.DataFrame, group: str, *, seed: int, test: float, validation: float
) -> dict[str, pd.DataFrame]:
    """Each group goes to one split, with probabilities `test`, `validation` and the rest to
    train; seeded, so the same file and seed give the same split."""
    groups = np.sort(frame[group].unique())
    draw = np.random.default_rng(seed).random(groups.size)
    channel = np.where(draw < test, "test", np.where(draw < test + validation, "validation", "train"))
    assignment = pd.Series(channel, index=groups).reindex(frame[group].to_numpy()).to_numpy()
    return {name: frame[assignment == name].reset_index(drop=True) for name in CHANNELS}


def split_by_patient(frame: pd.DataFrame, *, seed: int, test: float, validation: float) -> dict[str, pd.DataFrame]:
    """The readmission task's split: grouped by the patient number."""
    return split_by_group(frame, PATIENT_ID, seed=seed, test=test, validation=validation)
