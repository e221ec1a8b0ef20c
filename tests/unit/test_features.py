from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinrisk.tasks.readmission.features import (
    FEATURE_NAMES,
    FEATURE_SCHEMA,
    build_features,
    icd9_group,
    icd9_number,
    prior_encounter_counts,
    record_features,
    trainable_mask,
)
from clinrisk.tasks.readmission.schema import DEATH_OR_HOSPICE_DISPOSITIONS
from tests.conftest import cohort


@pytest.mark.parametrize(
    ("code", "group"),
    [
        ("428", "circulatory"),
        ("785.5", "circulatory"),
        ("486", "respiratory"),
        ("786", "respiratory"),
        ("560.1", "digestive"),
        ("250.83", "diabetes"),
        ("250", "diabetes"),
        ("820", "injury"),
        ("715", "musculoskeletal"),
        ("599", "genitourinary"),
        ("788", "genitourinary"),
        ("174", "neoplasms"),
        ("V45", "other"),
        ("E888", "other"),
        ("8", "other"),
        ("780", "other"),
    ],
)
def test_icd9_groups_follow_strack_2014(code: str, group: str) -> None:
    assert icd9_group([code]) == [group]


@pytest.mark.parametrize(("code", "number"), [("428", 428.0), ("250.83", 250.83), ("V45", 1045.0), ("E888", 2088.0)])
def test_icd9_codes_become_ordered_numbers(code: str, number: float) -> None:
    assert icd9_number([code])[0] == pytest.approx(number)


def test_missing_diagnosis_has_no_group() -> None:
    assert icd9_group([None, "428"]) == [None, "circulatory"]
    assert np.isnan(icd9_number([None])[0])


def test_features_have_the_schema_columns_in_order() -> None:
    frame = cohort(300, 1)
    features = build_features(frame)
    assert list(features.columns) == FEATURE_NAMES == FEATURE_SCHEMA.names
    assert len(features) == len(frame)
    assert all(dtype == np.float64 for dtype in features.dtypes)
    # Only the ICD-9 code numbers can be missing, and exactly where the diagnosis is.
    for column in ("diag_1", "diag_2", "diag_3"):
        np.testing.assert_array_equal(features[f"{column}_code"].isna(), frame[column].isna())
    assert not features.drop(columns=["diag_1_code", "diag_2_code", "diag_3_code"]).isna().any().any()
    one_hot = [n for n in FEATURE_NAMES if n.startswith(("race_", "discharge_", "payer_", "specialty_", "diag1_"))]
    assert set(np.unique(features[one_hot].to_numpy())) <= {0.0, 1.0}


def test_prior_encounters_count_only_earlier_encounters_of_the_same_patient() -> None:
    frame = pd.DataFrame(
        {"encounter_id": [30, 10, 20, 40, 15], "patient_nbr": [1, 1, 1, 2, 2]},
    )
    assert prior_encounter_counts(frame).tolist() == [2, 0, 1, 1, 0]


def test_history_adds_earlier_encounters_and_is_not_double_counted() -> None:
    frame = pd.DataFrame({"encounter_id": [30], "patient_nbr": [1]})
    history = pd.DataFrame({"encounter_id": [10, 20, 30, 50, 5], "patient_nbr": [1, 1, 1, 1, 2]})
    # 10 and 20 precede 30; 30 itself is in both tables; 50 is later; 5 is another patient.
    assert prior_encounter_counts(frame, history).tolist() == [2]


def test_single_record_scoring_matches_batch_row_for_row() -> None:
    """The real-time path (one encounter plus that patient's history) builds exactly the
    features the batch path builds for the same encounter."""
    frame = cohort(120, 3)
    batch = build_features(frame)
    for position in range(len(frame)):
        row = frame.iloc[[position]]
        history = frame[frame["patient_nbr"] == row["patient_nbr"].iloc[0]]
        single = build_features(row, history=history)
        np.testing.assert_array_equal(single.to_numpy(), batch.iloc[[position]].to_numpy())


def test_a_record_dict_gets_exactly_the_batch_features() -> None:
    """The serving path (a dict per encounter, no pandas) and the batch path agree."""
    frame = cohort(300, 4)
    batch = build_features(frame)
    for position in range(len(frame)):
        row = frame.iloc[position].to_dict()
        record = {str(k): (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        prior = int(batch["prior_encounters"].iloc[position])
        np.testing.assert_array_equal(record_features(record, prior), batch.iloc[[position]].to_numpy())


def test_the_signal_columns_move_the_features() -> None:
    frame = cohort(200, 5).copy()
    frame.loc[frame.index[0], "insulin"] = "Up"
    frame.loc[frame.index[0], "metformin"] = "Down"
    frame.loc[frame.index[0], "A1Cresult"] = ">8"
    features = build_features(frame).iloc[0]
    assert features["insulin_up"] == 1.0
    assert features["a1c_gt8"] == 1.0
    assert features["medication_dose_changes"] >= 2.0


def test_death_and_hospice_encounters_are_not_trainable() -> None:
    frame = cohort(2000, 2)
    mask = trainable_mask(frame)
    ended = frame["discharge_disposition_id"].isin(list(DEATH_OR_HOSPICE_DISPOSITIONS)).to_numpy()
    assert ended.any(), "the cohort should contain some death/hospice encounters"
    np.testing.assert_array_equal(mask, ~ended)


def test_schema_fingerprint_changes_with_the_feature_list() -> None:
    changed = FEATURE_SCHEMA.model_copy(update={"features": FEATURE_SCHEMA.features[:-1]})
    assert changed.fingerprint != FEATURE_SCHEMA.fingerprint
