"""The synthetic cohort: deterministic, valid per schema, realistic, and with a real signal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from clinrisk.data.validation import ensure_valid
from clinrisk.tasks.readmission.schema import (
    AGE_BANDS,
    COLUMN_NAMES,
    COLUMNS,
    DEATH_OR_HOSPICE_DISPOSITIONS,
    ENCOUNTER_ID,
    ICD9_PATTERN,
    PATIENT_ID,
    TARGET,
    ColumnKind,
    ColumnSpec,
)
from clinrisk.tasks.readmission.synth import (
    NOISE_COLUMNS,
    READMISSION_30D,
    coefficient_table_markdown,
    earlier_encounter_counts,
    generate_cohort,
    oracle_auc,
    true_readmission_probability,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "synthetic-cohort.md"
WHOLE_NUMBER_KINDS = {ColumnKind.IDENTIFIER, ColumnKind.INTEGER, ColumnKind.CODE}


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    """20,000 encounters: enough for stable rates and AUCs, and made in a fraction of a second."""
    return generate_cohort(20_000, seed=42)


def is_dead(frame: pd.DataFrame) -> pd.Series:
    return frame["discharge_disposition_id"].isin(list(DEATH_OR_HOSPICE_DISPOSITIONS))


def is_positive(frame: pd.DataFrame) -> np.ndarray:
    return (frame[TARGET] == "<30").to_numpy()


# --- determinism ------------------------------------------------------------------------


def test_same_rows_and_seed_give_the_same_frame() -> None:
    pd.testing.assert_frame_equal(generate_cohort(3_000, seed=7), generate_cohort(3_000, seed=7))


def test_different_seeds_give_different_frames() -> None:
    first, second = generate_cohort(3_000, seed=1), generate_cohort(3_000, seed=2)
    for column in ("age", "time_in_hospital", "diag_1", "insulin", TARGET, ENCOUNTER_ID):
        assert not first[column].equals(second[column]), column


@pytest.mark.parametrize("rows", [1, 2, 10, 999])
def test_exactly_the_rows_asked_for(rows: int) -> None:
    frame = generate_cohort(rows, seed=3)
    assert len(frame) == rows
    assert list(frame.columns) == list(COLUMN_NAMES)


def test_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rows"):
        generate_cohort(0)


# --- the canonical frame, valid per schema ---------------------------------------------------


def test_columns_and_dtypes_are_canonical(cohort: pd.DataFrame) -> None:
    assert list(cohort.columns) == list(COLUMN_NAMES)
    for spec in COLUMNS:
        column = cohort[spec.name]
        if spec.kind in WHOLE_NUMBER_KINDS:
            assert column.dtype == np.int64, spec.name
        else:
            assert column.dtype == object, spec.name
            present = column[column.notna()]
            assert all(type(v) is str for v in present), spec.name
            assert all(v is None for v in column[column.isna()]), spec.name


@pytest.mark.parametrize("spec", COLUMNS, ids=lambda spec: spec.name)
def test_every_value_is_valid_per_schema(cohort: pd.DataFrame, spec: ColumnSpec) -> None:
    column = cohort[spec.name]
    if not spec.nullable:
        assert column.notna().all()
    present = column.dropna()
    if spec.values is not None:
        assert set(present) <= set(spec.values)
    if spec.minimum is not None:
        assert present.min() >= spec.minimum
    if spec.maximum is not None:
        assert present.max() <= spec.maximum
    if spec.kind is ColumnKind.ICD9:
        pattern = re.compile(ICD9_PATTERN)
        assert all(pattern.match(code) for code in present)


def test_not_measured_is_the_string_none(cohort: pd.DataFrame) -> None:
    for column in ("max_glu_serum", "A1Cresult"):
        assert cohort[column].notna().all()
        assert (cohort[column] == "None").mean() > 0.8


def test_the_project_validator_accepts_it_unchanged(cohort: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ensure_valid(cohort), cohort)


# --- patients and their encounters ------------------------------------------------------------


def test_encounter_ids_are_unique_increasing_and_not_consecutive(cohort: pd.DataFrame) -> None:
    ids = cohort[ENCOUNTER_ID]
    assert ids.is_unique
    assert ids.is_monotonic_increasing
    assert (ids.diff().dropna() > 1).mean() > 0.9


def test_patients_have_several_encounters_with_a_long_tail(cohort: pd.DataFrame) -> None:
    per_patient = cohort[PATIENT_ID].value_counts()
    single = (per_patient == 1).mean()
    assert 0.65 < single < 0.85  # real file: 76.5 % of patients
    assert 1.25 < len(cohort) / len(per_patient) < 1.6  # real file: 1.42
    assert per_patient.max() >= 10


def test_a_patients_encounters_interleave_with_other_patients(cohort: pd.DataFrame) -> None:
    positions = pd.Series(np.arange(len(cohort)), index=cohort.index).groupby(cohort[PATIENT_ID])
    spans = positions.max() - positions.min() + 1
    sizes = positions.size()
    repeat = sizes > 1
    assert (spans[repeat] > sizes[repeat]).mean() > 0.9


def test_race_and_gender_are_constant_per_patient(cohort: pd.DataFrame) -> None:
    per_patient = cohort.groupby(PATIENT_ID)[["race", "gender"]].nunique(dropna=False)
    assert (per_patient == 1).all().all()


def test_age_band_never_decreases_along_a_patients_history(cohort: pd.DataFrame) -> None:
    band = cohort["age"].map({b: i for i, b in enumerate(AGE_BANDS)})
    ordered = cohort.assign(band=band).sort_values([PATIENT_ID, ENCOUNTER_ID])
    steps = ordered.groupby(PATIENT_ID)["band"].diff().dropna()
    assert (steps >= 0).all()
    assert (steps > 0).any()


def test_death_or_hospice_ends_a_patients_history(cohort: pd.DataFrame) -> None:
    last = cohort[ENCOUNTER_ID] == cohort.groupby(PATIENT_ID)[ENCOUNTER_ID].transform("max")
    assert is_dead(cohort).any()
    assert last[is_dead(cohort)].all()


# --- the outcome -----------------------------------------------------------------------------


def test_death_or_hospice_is_never_readmitted(cohort: pd.DataFrame) -> None:
    dead = is_dead(cohort)
    assert 0.015 < dead.mean() < 0.035  # real file: 2.4 %
    assert (cohort.loc[dead, TARGET] == "NO").all()
    assert (true_readmission_probability(cohort)[dead.to_numpy()] == 0).all()


def test_outcome_rates_are_realistic(cohort: pd.DataFrame) -> None:
    rates = cohort[TARGET].value_counts(normalize=True)
    assert set(rates.index) == {"<30", ">30", "NO"}
    assert 0.08 < rates["<30"] < 0.14  # real file: 11.2 %
    assert 0.28 < rates[">30"] < 0.42  # real file: 34.9 %
    assert rates["NO"] > 0.45


def test_labels_are_drawn_from_the_documented_probabilities(cohort: pd.DataFrame) -> None:
    probability = true_readmission_probability(cohort)
    assert abs(probability.mean() - is_positive(cohort).mean()) < 0.01
    # Calibrated by decile of the true probability, not only on average.
    decile = pd.qcut(probability, 10, labels=False, duplicates="drop")
    observed = pd.Series(is_positive(cohort)).groupby(decile).mean()
    expected = pd.Series(probability).groupby(decile).mean()
    assert (observed - expected).abs().max() < 0.04


def test_readmission_rises_with_prior_inpatient_visits(cohort: pd.DataFrame) -> None:
    visits = cohort["number_inpatient"].clip(upper=2)
    rate = pd.Series(is_positive(cohort)).groupby(visits.to_numpy()).mean()
    assert rate[0] < rate[1] < rate[2]
    assert rate[2] > 1.5 * rate[0]


def test_readmission_rises_with_earlier_encounters(cohort: pd.DataFrame) -> None:
    earlier = np.minimum(earlier_encounter_counts(cohort), 2)
    rate = pd.Series(is_positive(cohort)).groupby(earlier).mean()
    assert rate[0] < rate[1] < rate[2]


def test_transfers_are_readmitted_more_than_patients_sent_home(cohort: pd.DataFrame) -> None:
    disposition = cohort["discharge_disposition_id"]
    rate = pd.Series(is_positive(cohort))
    assert rate[(disposition == 3).to_numpy()].mean() > 1.3 * rate[(disposition == 1).to_numpy()].mean()


def out_of_fold_auc(frame: pd.DataFrame, features: pd.DataFrame) -> float:
    """AUC of a logistic regression scored on patients it was not fitted on (5 grouped folds)."""
    trainable = ~is_dead(frame).to_numpy()
    x, y = features[trainable].to_numpy(float), is_positive(frame)[trainable]
    folds = GroupKFold(n_splits=5).split(x, y, groups=frame.loc[trainable, PATIENT_ID])
    scores = cross_val_predict(LogisticRegression(max_iter=1_000), x, y, cv=list(folds), method="predict_proba")
    return float(roc_auc_score(y, scores[:, 1]))


def test_a_simple_model_finds_the_signal() -> None:
    frame = generate_cohort(5_000, seed=11)
    disposition = frame["discharge_disposition_id"]
    signal = pd.DataFrame(
        {
            "number_inpatient": frame["number_inpatient"].clip(upper=5),
            "number_emergency": frame["number_emergency"].clip(upper=4),
            "earlier_encounters": np.minimum(earlier_encounter_counts(frame), 3),
            "number_diagnoses": frame["number_diagnoses"].clip(upper=9),
            "time_in_hospital": frame["time_in_hospital"],
            "nursing_facility": disposition.isin([3, 4, 24]),
            "transferred": disposition.isin([2, 5, 22, 23, 28]),
            "insulin_changed": frame["insulin"].isin(["Up", "Down"]),
        }
    )
    assert out_of_fold_auc(frame, signal) > 0.65


def test_noise_columns_carry_no_signal(cohort: pd.DataFrame) -> None:
    # 20,000 rows: on 5,000 a noise model's AUC still wanders by about +-0.05, which would hide
    # a real effect of race or gender (an odds ratio of 1.5 gives about 0.55).
    noise = pd.get_dummies(cohort[list(NOISE_COLUMNS)].fillna("missing"), dtype=float)
    assert abs(out_of_fold_auc(cohort, noise) - 0.5) < 0.03


# --- the oracle and the documented model ------------------------------------------------------


def test_oracle_auc_is_the_auc_of_the_true_probabilities(cohort: pd.DataFrame) -> None:
    trainable = ~is_dead(cohort).to_numpy()
    probability = true_readmission_probability(cohort)
    expected = roc_auc_score(is_positive(cohort)[trainable], probability[trainable])
    assert oracle_auc(cohort) == pytest.approx(expected, abs=1e-9)
    assert oracle_auc(cohort, trainable_only=False) == pytest.approx(
        roc_auc_score(is_positive(cohort), probability), abs=1e-9
    )
    assert 0.70 < oracle_auc(cohort) < 0.80


def test_effect_sizes_are_plausible() -> None:
    for term in READMISSION_30D.terms:
        assert 0.5 <= term.odds_ratio <= 3.0, term.name


def test_the_doc_shows_the_coefficients_the_code_uses() -> None:
    assert coefficient_table_markdown() in DOC.read_text(encoding="utf-8")
