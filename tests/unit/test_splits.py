from __future__ import annotations

from clinrisk.data.splits import CHANNELS, split_by_patient
from tests.conftest import cohort


def test_no_patient_is_in_two_splits_and_every_row_is_somewhere() -> None:
    frame = cohort(3000, 11)
    splits = split_by_patient(frame, seed=1, test=0.2, validation=0.2)
    patients = {name: set(splits[name]["patient_nbr"]) for name in CHANNELS}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    assert sum(len(s) for s in splits.values()) == len(frame)
    shares = {name: len(splits[name]) / len(frame) for name in CHANNELS}
    assert 0.15 < shares["test"] < 0.25
    assert 0.15 < shares["validation"] < 0.25


def test_split_is_deterministic_for_a_seed_and_changes_with_it() -> None:
    frame = cohort(1000, 11)
    first = split_by_patient(frame, seed=1, test=0.2, validation=0.2)
    again = split_by_patient(frame, seed=1, test=0.2, validation=0.2)
    other = split_by_patient(frame, seed=2, test=0.2, validation=0.2)
    assert first["test"]["encounter_id"].tolist() == again["test"]["encounter_id"].tolist()
    assert first["test"]["encounter_id"].tolist() != other["test"]["encounter_id"].tolist()
