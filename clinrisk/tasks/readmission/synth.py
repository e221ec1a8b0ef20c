"""A synthetic cohort of UCI "Diabetes 130-US hospitals" encounters with a known readmission signal.

It is the project's default data (`make run`, the tests, `clinrisk data synth`), so it has to
look like the real file (the same 50 columns, realistic marginals, several encounters per
patient) while its outcome follows a documented logistic model whose coefficients live in one
table, `READMISSION_30D`. Because the generating probabilities are known, so is the best AUC a
model can reach (`oracle_auc`). See docs/synthetic-cohort.md.

The marginal weights below are rounded shares of values in the real file (normalised when
drawn); no row of the real file is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clinrisk.tasks.readmission.schema import (
    AGE_BANDS,
    COLUMN_NAMES,
    DEATH_OR_HOSPICE_DISPOSITIONS,
    ENCOUNTER_ID,
    MEDICATION_STATES,
    MEDICATIONS,
    PATIENT_ID,
    POSITIVE_LABEL,
    SPECS,
    TARGET,
    ColumnKind,
)

IntArray = np.ndarray
FloatArray = np.ndarray
# Value -> relative weight; None as a value means "missing".
Weights = Mapping[Any, float]

# ---------------------------------------------------------------------------------------------
# The outcome model. Each term's value is read from the finished frame (plus the count of the
# patient's earlier encounters), so `true_readmission_probability` recomputes the truth for any
# cohort and the documentation is rendered from the same table.
# ---------------------------------------------------------------------------------------------

TermValue = Callable[[pd.DataFrame, IntArray], FloatArray]


@dataclass(frozen=True)
class Term:
    """One term of a logistic model: `coefficient` (log-odds) times `value(frame, earlier)`."""

    name: str
    coefficient: float
    meaning: str
    value: TermValue

    @property
    def odds_ratio(self) -> float:
        return float(np.exp(self.coefficient))


@dataclass(frozen=True)
class OutcomeModel:
    """log-odds = intercept + sum of the terms; 0 probability after death or hospice."""

    intercept: float
    terms: tuple[Term, ...]

    def probability(self, frame: pd.DataFrame, earlier: IntArray) -> FloatArray:
        log_odds = np.full(len(frame), self.intercept, dtype=float)
        for term in self.terms:
            log_odds += term.coefficient * term.value(frame, earlier)
        # Encounters that ended in death or hospice cannot be readmitted.
        return np.where(_ended_in_death_or_hospice(frame), 0.0, 1.0 / (1.0 + np.exp(-log_odds)))

    def markdown(self) -> str:
        """The model as a Markdown table (docs/synthetic-cohort.md shows exactly this)."""
        rows = [
            "| term | value | log-odds | odds ratio |",
            "|---|---|---:|---:|",
            f"| intercept | every encounter | {self.intercept:+.2f} | |",
            *(f"| `{t.name}` | {t.meaning} | {t.coefficient:+.2f} | {t.odds_ratio:.2f} |" for t in self.terms),
        ]
        return "\n".join(rows)


def _ended_in_death_or_hospice(frame: pd.DataFrame) -> np.ndarray:
    return frame["discharge_disposition_id"].isin(list(DEATH_OR_HOSPICE_DISPOSITIONS)).to_numpy(dtype=bool)


def _capped(column: str, cap: int, reference: int = 0, per: int = 1) -> TermValue:
    # Caps keep the few extreme counts (up to 76 visits exist) from giving absurd probabilities.
    return lambda frame, earlier: (np.minimum(frame[column].to_numpy(dtype=float), cap) - reference) / per


def _one_of(column: str, values: Sequence[object]) -> TermValue:
    return lambda frame, earlier: frame[column].isin(list(values)).to_numpy(dtype=float)


def _earlier_encounters(cap: int) -> TermValue:
    return lambda frame, earlier: np.minimum(earlier, cap).astype(float)


# The terms both outcome models use, each with its own coefficient and cap. The meaning is written
# from the cap, so the documented table cannot disagree with the value the model computes.
def _prior_visits(kind: str, coefficient: float, cap: int) -> Term:
    column = f"number_{kind}"
    return Term(column, coefficient, f"{kind} visits in the prior year (capped at {cap})", _capped(column, cap))


def _earlier_encounters_term(coefficient: float, cap: int) -> Term:
    meaning = f"the patient's earlier encounters in the cohort (capped at {cap})"
    return Term("earlier_encounters", coefficient, meaning, _earlier_encounters(cap))


def _diagnoses_term(coefficient: float) -> Term:
    meaning = "diagnoses entered, per diagnosis from 5 up to 9"
    return Term("number_diagnoses", coefficient, meaning, _capped("number_diagnoses", 9, reference=5))


def _age_band_above_60(frame: pd.DataFrame, earlier: IntArray) -> FloatArray:
    lookup = {band: float(i) for i, band in enumerate(AGE_BANDS)}
    return frame["age"].map(lookup).to_numpy(dtype=float) - AGE_BANDS.index("[60-70)")


def _a1c_high_and_changed(frame: pd.DataFrame, earlier: IntArray) -> FloatArray:
    high = frame["A1Cresult"].to_numpy(dtype=object) == ">8"
    changed = frame["change"].to_numpy(dtype=object) == "Ch"
    return (high & changed).astype(float)


def _primary_diagnosis_between(low: int, high: int) -> TermValue:
    def value(frame: pd.DataFrame, earlier: IntArray) -> FloatArray:
        # Parse the few hundred distinct codes, not every row. V and E codes become NaN, which
        # lies in no range; a missing code has index -1 and picks the appended False.
        index, distinct = pd.factorize(frame["diag_1"])
        number = np.floor(pd.to_numeric(pd.Series(distinct, dtype=object), errors="coerce").to_numpy(float))
        inside = np.append((number >= low) & (number <= high), False)
        return inside[index].astype(float)

    return value


# Discharge groups by what they mean for follow-up care (IDs_mapping.csv). The reference level
# is everything else alive: home (1), unknown/unmapped (18, 25, 26), outpatient referral.
HOME_HEALTH_DISPOSITIONS: tuple[int, ...] = (6, 8)
NURSING_FACILITY_DISPOSITIONS: tuple[int, ...] = (3, 4, 24)
OTHER_INPATIENT_CARE_DISPOSITIONS: tuple[int, ...] = (2, 5, 9, 10, 15, 22, 23, 27, 28, 29, 30)
LEFT_AMA_DISPOSITIONS: tuple[int, ...] = (7,)

# P(readmitted within 30 days). The intercept is the log-odds of an encounter with every term
# at 0 (first encounter, no prior visits, 5 diagnoses, 1 day, 10 drugs, aged 60-69, sent home,
# HbA1c not measured, insulin unchanged); it is tuned so about 11 % of the cohort is "<30".
# Effects are of the size the real data and the literature show; together they are a little
# stronger than in the real file, so that models have something clear to find (see the doc).
READMISSION_30D = OutcomeModel(
    intercept=-3.80,
    terms=(
        _prior_visits("inpatient", 0.35, cap=5),
        _earlier_encounters_term(0.20, cap=3),
        _prior_visits("emergency", 0.25, cap=4),
        _diagnoses_term(0.15),
        Term("time_in_hospital", 0.08, "days in hospital, per day above 1",
             _capped("time_in_hospital", 14, reference=1)),
        Term("num_medications", 0.10, "drugs given, per 5 above 10 (capped at 35)",
             _capped("num_medications", 35, reference=10, per=5)),
        Term("age_band", 0.12, "age band, per 10 years above [60-70)", _age_band_above_60),
        Term("discharge_home_health", 0.45, "discharged home with home health or IV care (6, 8)",
             _one_of("discharge_disposition_id", HOME_HEALTH_DISPOSITIONS)),
        Term("discharge_nursing_facility", 0.70, "discharged to a SNF, ICF or nursing facility (3, 4, 24)",
             _one_of("discharge_disposition_id", NURSING_FACILITY_DISPOSITIONS)),
        Term("discharge_other_inpatient_care", 0.85,
             "transferred to another hospital, rehab, long-term or psychiatric care (2, 5, 22, 23, 28, ...)",
             _one_of("discharge_disposition_id", OTHER_INPATIENT_CARE_DISPOSITIONS)),
        Term("discharge_left_ama", 0.60, "left against medical advice (7)",
             _one_of("discharge_disposition_id", LEFT_AMA_DISPOSITIONS)),
        Term("insulin_up", 0.50, "insulin dose raised", _one_of("insulin", ("Up",))),
        Term("insulin_down", 0.55, "insulin dose lowered", _one_of("insulin", ("Down",))),
        Term("a1c_measured", -0.25, "HbA1c measured (any result)",
             _one_of("A1Cresult", ("Norm", ">7", ">8"))),
        Term("a1c_high_and_changed", -0.35, "HbA1c >8 and diabetic medication changed (Strack 2014)",
             _a1c_high_and_changed),
        Term("primary_diagnosis_neoplasm", 0.55, "primary diagnosis a neoplasm (ICD-9 140-239)",
             _primary_diagnosis_between(140, 239)),
        Term("primary_diagnosis_diabetes", 0.25, "primary diagnosis diabetes (ICD-9 250.xx)",
             _primary_diagnosis_between(250, 250)),
    ),
)  # fmt: skip

# Drawn per patient, independently of everything else: a subgroup check on them has nothing
# real to find.
NOISE_COLUMNS: tuple[str, ...] = ("race", "gender", "payer_code")

# P(readmitted after 30 days | not within 30 days), for encounters not ended in death or
# hospice. Tuned so about 35 % of the cohort is ">30".
READMISSION_LATER = OutcomeModel(
    intercept=-0.80,
    terms=(
        _prior_visits("inpatient", 0.25, cap=6),
        _earlier_encounters_term(0.20, cap=5),
        _prior_visits("emergency", 0.15, cap=5),
        _prior_visits("outpatient", 0.10, cap=5),
        _diagnoses_term(0.06),
    ),
)


def earlier_encounter_counts(frame: pd.DataFrame) -> IntArray:
    """Per row: how many encounters of the same patient in `frame` have a smaller encounter id."""
    patients = frame[PATIENT_ID].to_numpy()
    order = np.lexsort((frame[ENCOUNTER_ID].to_numpy(), patients))
    first_of_patient = np.r_[True, patients[order][1:] != patients[order][:-1]]
    group_start = np.maximum.accumulate(np.where(first_of_patient, np.arange(len(order)), 0))
    counts = np.empty(len(order), dtype=np.int64)
    counts[order] = np.arange(len(order)) - group_start
    return counts


def true_readmission_probability(frame: pd.DataFrame) -> FloatArray:
    """P(readmitted <30) per row under the generating model (0 after death or hospice).

    `frame` must hold whole patients, as `generate_cohort` returns them: the count of a
    patient's earlier encounters is part of the model.
    """
    return READMISSION_30D.probability(frame, earlier_encounter_counts(frame))


def oracle_auc(frame: pd.DataFrame, *, trainable_only: bool = True) -> float:
    """ROC-AUC of the true generating probabilities against the drawn labels: the ceiling.

    With `trainable_only`, encounters that ended in death or hospice (outcome certain, left out
    of training and evaluation) are left out here too.
    """
    probability = true_readmission_probability(frame)
    positive = (frame[TARGET] == POSITIVE_LABEL).to_numpy(dtype=bool)
    if trainable_only:
        keep = ~_ended_in_death_or_hospice(frame)
        probability, positive = probability[keep], positive[keep]
    return _roc_auc(positive, probability)


def _roc_auc(positive: np.ndarray, score: FloatArray) -> float:
    # Mann-Whitney U with average ranks for ties (many rows share a probability); saves
    # importing scikit-learn just to generate data.
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the AUC needs encounters of both classes")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def coefficient_table_markdown() -> str:
    """The <30 model and the noise columns as one Markdown table, as the doc shows it."""
    noise = [f"| `{column}` | no effect: pure noise | 0 | 1.00 |" for column in NOISE_COLUMNS]
    return "\n".join([READMISSION_30D.markdown(), *noise])


# ---------------------------------------------------------------------------------------------
# Marginals: weights per value (None = missing), rounded from the real file.
# ---------------------------------------------------------------------------------------------

RACE_WEIGHTS: Weights = {
    "Caucasian": 74.78, "AfricanAmerican": 18.88, "Hispanic": 2.00, "Other": 1.48, "Asian": 0.63, None: 2.23,
}  # fmt: skip
GENDER_WEIGHTS: Weights = {"Female": 53.76, "Male": 46.24, "Unknown/Invalid": 0.003}
AGE_WEIGHTS: Weights = dict(
    zip(AGE_BANDS, (0.16, 0.68, 1.63, 3.71, 9.52, 16.96, 22.09, 25.62, 16.90, 2.74), strict=True)
)
WEIGHT_WEIGHTS: Weights = {
    None: 96.86, "[75-100)": 1.31, "[50-75)": 0.88, "[100-125)": 0.61, "[125-150)": 0.14, "[25-50)": 0.10,
    "[0-25)": 0.05, "[150-175)": 0.03, "[175-200)": 0.01, ">200": 0.003,
}  # fmt: skip
PAYER_WEIGHTS: Weights = {
    None: 39.56, "MC": 31.88, "HM": 6.17, "SP": 4.92, "BC": 4.57, "MD": 3.47, "CP": 2.49, "UN": 2.41,
    "CM": 1.90, "OG": 1.02, "PO": 0.58, "DM": 0.54, "CH": 0.14, "WC": 0.13, "OT": 0.09, "MP": 0.08,
    "SI": 0.05, "FR": 0.001,
}  # fmt: skip
SPECIALTY_WEIGHTS: Weights = {
    None: 49.08, "InternalMedicine": 14.38, "Emergency/Trauma": 7.43, "Family/GeneralPractice": 7.31,
    "Cardiology": 5.26, "Surgery-General": 3.05, "Nephrology": 1.59, "Orthopedics": 1.38,
    "Orthopedics-Reconstructive": 1.21, "Radiologist": 1.12, "Pulmonology": 0.86, "Psychiatry": 0.84,
    "Urology": 0.67, "ObstetricsandGynecology": 0.66, "Surgery-Cardiovascular/Thoracic": 0.64,
    "Gastroenterology": 0.55, "Surgery-Vascular": 0.52, "Surgery-Neuro": 0.46,
    "PhysicalMedicineandRehabilitation": 0.38, "Oncology": 0.34, "Pediatrics": 0.25,
    "Hematology/Oncology": 0.20, "Neurology": 0.20, "Pediatrics-Endocrinology": 0.16, "Otolaryngology": 0.12,
    "Endocrinology": 0.12, "Surgery-Thoracic": 0.11, "Psychology": 0.10, "Podiatry": 0.10,
    "Surgery-Cardiovascular": 0.10, "Pediatrics-CriticalCare": 0.09, "Hematology": 0.08, "Gynecology": 0.06,
    "Hospitalist": 0.06, "Radiology": 0.05, "Surgeon": 0.04, "Surgery-Plastic": 0.04, "Osteopath": 0.04,
    "Ophthalmology": 0.04, "InfectiousDiseases": 0.04, "SurgicalSpecialty": 0.03, "Rheumatology": 0.02,
    "Anesthesiology": 0.01,
}  # fmt: skip
ADMISSION_TYPE_WEIGHTS: Weights = {1: 53.05, 2: 18.16, 3: 18.54, 4: 0.01, 5: 4.70, 6: 5.20, 7: 0.02, 8: 0.31}
# Admission source depends on admission type: emergencies come through the ER, elective
# admissions by referral. Rows: admission type; columns: ADMISSION_SOURCE_VALUES.
ADMISSION_SOURCE_VALUES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 20, 22)
ADMISSION_SOURCE_BY_TYPE: dict[int, tuple[float, ...]] = {
    1: (3.1, 0.4, 0.1, 0.5, 0.9, 3.7, 89.9, 0.03, 0.05, 1.2, 0.0, 0.02),
    2: (49.9, 2.8, 0.6, 9.9, 1.5, 1.0, 33.2, 0.02, 0.05, 1.1, 0.0, 0.02),
    3: (85.8, 1.7, 0.3, 5.7, 0.8, 0.4, 4.9, 0.0, 0.05, 0.1, 0.0, 0.02),
    4: (20.0, 0.0, 0.0, 50.0, 0.0, 0.0, 20.0, 0.0, 10.0, 0.0, 0.0, 0.0),
    5: (35.6, 0.0, 0.0, 0.1, 0.0, 0.0, 2.7, 0.0, 0.0, 61.6, 0.0, 0.0),
    6: (11.2, 0.5, 0.0, 0.8, 0.2, 0.1, 31.0, 0.0, 2.2, 50.9, 3.1, 0.0),
    7: (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    8: (55.3, 4.4, 0.0, 1.2, 0.0, 0.0, 39.1, 0.0, 0.0, 0.0, 0.0, 0.0),
}
# Discharge to a SNF (3) or home health (6) rises steeply with age; per age band, the share of
# encounters discharged to one of them, split 52:48.
POST_ACUTE_SHARE_BY_AGE: tuple[float, ...] = (
    0.012, 0.022, 0.057, 0.081, 0.112, 0.159, 0.220, 0.317, 0.456, 0.559,
)  # fmt: skip
POST_ACUTE_WEIGHTS: Weights = {3: 52.0, 6: 48.0}
# The other dispositions (death and hospice included), shares of all encounters.
OTHER_DISPOSITION_WEIGHTS: Weights = {
    1: 59.19, 18: 3.63, 2: 2.09, 22: 1.96, 11: 1.61, 5: 1.16, 25: 0.97, 4: 0.80, 7: 0.61, 23: 0.40,
    13: 0.39, 14: 0.37, 28: 0.14, 8: 0.11, 15: 0.06, 24: 0.05, 9: 0.02, 17: 0.01, 16: 0.01, 19: 0.008,
    10: 0.006, 27: 0.005, 12: 0.003, 20: 0.002,
}  # fmt: skip
TIME_IN_HOSPITAL_WEIGHTS: Weights = {
    1: 13.96, 2: 16.93, 3: 17.45, 4: 13.68, 5: 9.79, 6: 7.41, 7: 5.76, 8: 4.31, 9: 2.95, 10: 2.30,
    11: 1.82, 12: 1.42, 13: 1.19, 14: 1.02,
}  # fmt: skip
NUM_PROCEDURES_WEIGHTS: Weights = {0: 45.84, 1: 20.38, 2: 12.50, 3: 9.28, 4: 4.11, 5: 3.02, 6: 4.87}
NUMBER_DIAGNOSES_WEIGHTS: Weights = {
    1: 0.22, 2: 1.01, 3: 2.79, 4: 5.44, 5: 11.20, 6: 9.98, 7: 10.21, 8: 10.43, 9: 48.62, 10: 0.02,
    11: 0.01, 12: 0.01, 13: 0.02, 14: 0.01, 15: 0.01, 16: 0.04,
}  # fmt: skip
GLUCOSE_WEIGHTS: Weights = {"None": 94.75, "Norm": 2.55, ">200": 1.46, ">300": 1.24}
A1C_WEIGHTS: Weights = {"None": 83.28, ">8": 8.07, "Norm": 4.90, ">7": 3.75}
# Per drug: shares of No, Steady, Up, Down. Insulin depends on HbA1c (see INSULIN_BY_A1C).
MEDICATION_WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    "metformin": (80.36, 18.03, 1.05, 0.57),
    "repaglinide": (98.49, 1.36, 0.11, 0.04),
    "nateglinide": (99.31, 0.66, 0.02, 0.01),
    "chlorpropamide": (99.92, 0.08, 0.006, 0.001),
    "glimepiride": (94.90, 4.59, 0.32, 0.19),
    "acetohexamide": (100.0, 0.001, 0.0, 0.0),
    "glipizide": (87.53, 11.16, 0.76, 0.55),
    "glyburide": (89.54, 9.11, 0.80, 0.55),
    "tolbutamide": (99.98, 0.02, 0.0, 0.0),
    "pioglitazone": (92.80, 6.86, 0.23, 0.12),
    "rosiglitazone": (93.75, 5.99, 0.18, 0.09),
    "acarbose": (99.70, 0.29, 0.01, 0.003),
    "miglitol": (99.96, 0.03, 0.002, 0.005),
    "troglitazone": (100.0, 0.003, 0.0, 0.0),
    "tolazamide": (99.96, 0.04, 0.001, 0.0),
    "examide": (100.0, 0.0, 0.0, 0.0),
    "citoglipton": (100.0, 0.0, 0.0, 0.0),
    "glyburide-metformin": (99.31, 0.68, 0.008, 0.006),
    "glipizide-metformin": (99.99, 0.013, 0.0, 0.0),
    "glimepiride-pioglitazone": (100.0, 0.001, 0.0, 0.0),
    "metformin-rosiglitazone": (100.0, 0.002, 0.0, 0.0),
    "metformin-pioglitazone": (100.0, 0.001, 0.0, 0.0),
}
# A high HbA1c makes an insulin change about twice as likely (the paper's premise).
INSULIN_BY_A1C: dict[str, tuple[float, float, float, float]] = {
    ">8": (26.7, 33.3, 20.5, 19.5),
    "other": (48.0, 30.0, 10.4, 11.4),
}
# Without a dose change, "change" is still "Ch" for some patients on a drug (one was started
# or switched): the real share is about 38 %.
CHANGE_WITHOUT_DOSE_CHANGE = 0.38

# ICD-9 codes per group of Strack et al. 2014 with weights within the group, then the share of
# each group per diagnosis position. The diabetes and V codes of the primary diagnosis differ
# from the secondary ones (complications and aftercare first, "250" and history codes after).
ICD9_CODES: dict[str, dict[str, float]] = {
    "circulatory": {
        "428": 20, "414": 15, "427": 12, "401": 10, "410": 8, "403": 6, "434": 4, "411": 4, "425": 3,
        "424": 3, "402": 2, "413": 2, "435": 2, "440": 2, "433": 2, "453": 1.5, "415": 1.5, "785": 1.5,
        "412": 1, "416": 1, "426": 1, "458": 0.8, "429": 0.5, "436": 0.5, "443": 0.5, "444": 0.5,
        "396": 0.3, "398": 0.3, "459": 0.3,
    },
    "respiratory": {
        "786": 25, "486": 20, "491": 15, "496": 12, "518": 9, "493": 7, "507": 3, "511": 3, "482": 2,
        "466": 1.5, "492": 1, "515": 1, "487": 0.7, "490": 0.5, "465": 0.5, "514": 0.5, "512": 0.5,
    },
    "digestive": {
        "577": 10, "562": 9, "574": 9, "560": 9, "530": 8, "578": 7, "535": 5, "571": 4, "787": 4,
        "536": 4, "558": 3, "569": 3, "531": 2, "553": 2, "564": 2, "575": 1.5, "532": 1, "557": 1,
        "550": 1,
    },
    "diabetes_primary": {
        "250.8": 19, "250.6": 13, "250.7": 10, "250.13": 10, "250.02": 8, "250.11": 7, "250.12": 5,
        "250.82": 5, "250.1": 4, "250.4": 3, "250": 3, "250.03": 2, "250.81": 1.5, "250.22": 1,
        "250.83": 1, "250.42": 1, "250.41": 1, "250.92": 1, "250.3": 0.5,
    },
    "diabetes_secondary": {
        "250": 55, "250.02": 13, "250.01": 9, "250.6": 7, "250.4": 2, "250.8": 2, "250.41": 1.5,
        "250.03": 1.5, "250.92": 1.2, "250.82": 1, "250.7": 1, "250.42": 0.8, "250.51": 0.7,
        "250.13": 0.5, "250.5": 0.5, "250.43": 0.3,
    },
    "injury": {
        "996": 22, "998": 16, "997": 11, "820": 8, "995": 6, "824": 3, "812": 3, "805": 2.5, "808": 2,
        "807": 2, "821": 1.5, "823": 1.2, "852": 1, "873": 1, "924": 1, "999": 1, "850": 0.8, "813": 0.8,
        "920": 0.7, "959": 0.7, "854": 0.4, "965": 0.4, "969": 0.4, "800": 0.3, "977": 0.3,
    },
    "musculoskeletal": {
        "715": 25, "722": 10, "724": 9, "733": 9, "730": 8, "721": 4, "728": 4, "729": 4, "710": 4,
        "719": 3, "731": 3, "714": 2, "716": 2, "726": 1.5, "723": 1.5, "711": 1, "738": 1, "718": 0.7,
        "737": 0.5,
    },
    "genitourinary": {
        "599": 33, "584": 22, "585": 15, "592": 4, "590": 4, "788": 3, "600": 2.5, "593": 2, "591": 1.5,
        "618": 1.5, "595": 1, "626": 0.7, "625": 0.7, "581": 0.7, "583": 0.7, "596": 0.7, "608": 0.5,
        "620": 0.4, "617": 0.3,
    },
    "neoplasms": {
        "162": 13, "197": 13, "198": 10, "153": 6, "202": 5, "196": 5, "185": 4, "174": 4, "218": 3,
        "189": 3, "157": 3, "203": 3, "204": 3, "211": 3, "188": 2, "182": 2, "205": 1.5, "199": 1.5,
        "150": 1, "151": 1, "154": 1, "155": 1, "183": 1, "191": 1, "200": 1, "225": 0.8, "238": 0.8,
        "239": 0.5,
    },
    "other": {
        "276": 20, "780": 8, "682": 8, "707": 6, "285": 5, "38": 5, "272": 4, "296": 3, "305": 2.5,
        "278": 2.5, "280": 2, "41": 2, "789": 2, "244": 2, "295": 1.5, "357": 1.5, "8": 1, "648": 1,
        "311": 1, "294": 1, "70": 0.8, "112": 0.8, "348": 0.8, "681": 0.8, "345": 0.7, "331": 0.7,
        "290": 0.6, "303": 0.6, "783": 0.6, "790": 0.6, "799": 0.6, "784": 0.6, "300": 0.5, "781": 0.5,
        "277": 0.5, "263": 0.5, "349": 0.4, "342": 0.4, "332": 0.4, "287": 0.4, "340": 0.3, "42": 0.3,
        "286": 0.3, "288": 0.3, "282": 0.3, "284": 0.3, "791": 0.3, "135": 0.2,
    },
    "supplementary_primary": {
        "V57": 70, "V58": 14, "V55": 4, "V54": 3, "V53": 3, "V56": 1, "V71": 0.5, "V63": 0.5, "V45": 0.5,
        "V66": 0.2,
    },
    "supplementary_secondary": {
        "V45": 25, "V42": 15, "V85": 10, "V58": 10, "V43": 8, "V15": 8, "V10": 6, "V54": 5, "V12": 4,
        "V62": 4, "V44": 2, "V49": 2, "V46": 1, "V09": 1,
    },
    "external_cause": {
        "E849": 20, "E878": 16, "E888": 13, "E885": 11, "E932": 7, "E879": 6, "E942": 5, "E947": 4,
        "E935": 3, "E880": 3, "E884": 2, "E934": 2, "E812": 1.5, "E950": 1, "E817": 1, "E819": 1,
    },
}  # fmt: skip
ICD9_GROUP_SHARES: dict[str, dict[str, float]] = {
    "diag_1": {
        "circulatory": 29.91, "other": 16.24, "respiratory": 14.17, "digestive": 9.31,
        "diabetes_primary": 8.61, "injury": 6.85, "genitourinary": 5.03, "musculoskeletal": 4.87,
        "neoplasms": 3.37, "supplementary_primary": 1.62, "external_cause": 0.001,
    },
    "diag_2": {
        "circulatory": 31.33, "other": 23.60, "diabetes_secondary": 12.57, "respiratory": 10.71,
        "genitourinary": 8.23, "digestive": 4.10, "neoplasms": 2.50, "injury": 2.39,
        "supplementary_secondary": 1.77, "musculoskeletal": 1.73, "external_cause": 0.72,
    },
    "diag_3": {
        "circulatory": 29.78, "other": 23.72, "diabetes_secondary": 16.86, "respiratory": 7.23,
        "genitourinary": 6.56, "digestive": 3.86, "supplementary_secondary": 3.75, "injury": 1.91,
        "musculoskeletal": 1.88, "neoplasms": 1.82, "external_cause": 1.22,
    },
}  # fmt: skip
# A diagnosis position is empty when fewer diagnoses were entered, and rarely otherwise.
DIAGNOSIS_MISSING_RATE: dict[str, float] = {"diag_1": 0.0002, "diag_2": 0.0012, "diag_3": 0.002}

# Encounters per patient: 76.5 % of patients have one; k >= 2 encounters have weight
# k^-2.1 * exp(-k / 4), fitted to the real file's counts (71,518 patients for 101,766
# encounters, at most 40 for one patient).
SINGLE_ENCOUNTER_SHARE = 0.765
ENCOUNTER_TAIL_EXPONENT = 2.1
ENCOUNTER_TAIL_SCALE = 4.0
MAX_ENCOUNTERS_PER_PATIENT = 40
# Between two encounters of a patient the age band moves up with this probability.
AGE_BAND_STEP_PROBABILITY = 0.052


@dataclass(frozen=True)
class VisitModel:
    """Visits in the prior year: Poisson with a log-normal rate (see `_visit_counts`)."""

    mean: float  # for a first encounter of an average patient
    frailty_weight: float  # how much the patient's frailty moves the log-rate
    encounter_spread: float  # sd of the log-rate between encounters of one patient
    per_earlier: float  # relative increase per earlier encounter in the cohort
    maximum: int


VISIT_MODELS: dict[str, VisitModel] = {
    "number_outpatient": VisitModel(0.21, 1.0, 1.4, 0.3, 42),
    "number_emergency": VisitModel(0.095, 0.9, 1.2, 0.6, 76),
    "number_inpatient": VisitModel(0.15, 0.8, 0.9, 0.0, 21),
}
FRAILTY_PER_LOG_ENCOUNTERS = 0.5
EARLIER_ENCOUNTER_IN_PRIOR_YEAR = 0.75

# ---------------------------------------------------------------------------------------------
# Drawing.
# ---------------------------------------------------------------------------------------------


def _probabilities(weights: Sequence[float] | FloatArray) -> FloatArray:
    p = np.asarray(weights, dtype=float)
    return p / p.sum()


def _draw(rng: np.random.Generator, weights: Weights, size: int) -> np.ndarray:
    """`size` values drawn from `weights`, as an object array (None stays None)."""
    values = np.empty(len(weights), dtype=object)
    values[:] = list(weights.keys())
    return values[rng.choice(len(weights), size=size, p=_probabilities(list(weights.values())))]


def _draw_int(rng: np.random.Generator, weights: Weights, size: int) -> IntArray:
    return _draw(rng, weights, size).astype(np.int64)


def _draw_by_group(rng: np.random.Generator, table: FloatArray, group: IntArray) -> IntArray:
    """Per row, an index into the columns of `table` drawn from the probability row `table[group]`."""
    cumulative = np.cumsum(table, axis=1)
    # Dividing by the last column makes it exactly 1.0, so a zero-weight category at the end
    # can never be picked (u < 1 always).
    cdf = cumulative / cumulative[:, -1:]
    picks = (rng.random(len(group))[:, None] >= cdf[group]).sum(axis=1)
    return np.minimum(picks, table.shape[1] - 1)


@dataclass(frozen=True)
class _Timeline:
    """Encounters in patient order: who they belong to and where they stand in that history."""

    patient: IntArray  # patient index per encounter (0..n_patients-1), non-decreasing
    earlier: IntArray  # the patient's encounters before this one
    is_last: np.ndarray  # the patient's last encounter (only it can end in death or hospice)
    n_patients: int


def _encounters_per_patient(rng: np.random.Generator, rows: int) -> IntArray:
    k = np.arange(2, MAX_ENCOUNTERS_PER_PATIENT + 1)
    tail_weights = k.astype(float) ** -ENCOUNTER_TAIL_EXPONENT * np.exp(-k / ENCOUNTER_TAIL_SCALE)
    tail = (1 - SINGLE_ENCOUNTER_SHARE) * _probabilities(tail_weights)
    sizes = np.r_[1, k]
    # Every patient has at least one encounter, so `rows` patients always cover `rows` rows.
    counts = rng.choice(sizes, size=rows, p=np.r_[SINGLE_ENCOUNTER_SHARE, tail])
    total = np.cumsum(counts)
    n_patients = int(np.searchsorted(total, rows)) + 1
    counts = counts[:n_patients].copy()
    counts[-1] -= total[n_patients - 1] - rows  # the last patient is cut to fit exactly
    return counts


def _timeline(rng: np.random.Generator, rows: int) -> _Timeline:
    counts = _encounters_per_patient(rng, rows)
    patient = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    earlier = np.arange(rows) - starts[patient]
    return _Timeline(patient, earlier, earlier == counts[patient] - 1, len(counts))


def _calendar_order(rng: np.random.Generator, timeline: _Timeline) -> IntArray:
    """A permutation of the patient-ordered rows into calendar order.

    Each encounter gets a random time, sorted within its patient, so a patient's encounters
    come in order but interleave with everyone else's.
    """
    times = rng.random(len(timeline.patient))
    within_patient = times[np.lexsort((times, timeline.patient))]
    return np.argsort(within_patient, kind="stable")


def _increasing_ids(rng: np.random.Generator, size: int, mean_gap: int, start: int) -> IntArray:
    # Random gaps: ids are unique and increasing but not consecutive, like the real ones.
    return start + np.cumsum(rng.integers(1, 2 * mean_gap, size=size, dtype=np.int64))


def _patient_numbers(rng: np.random.Generator, timeline: _Timeline, order: IntArray) -> IntArray:
    """Patient numbers that, as in the real file, loosely grow with the first encounter's date."""
    calendar_position = np.empty(len(order), dtype=np.int64)
    calendar_position[order] = np.arange(len(order))
    first_seen = calendar_position[timeline.earlier == 0] / len(order)
    rank = np.argsort(np.argsort(first_seen + rng.normal(0.0, 0.3, timeline.n_patients)))
    numbers = _increasing_ids(rng, timeline.n_patients, mean_gap=2_650, start=100)
    return numbers[rank][timeline.patient]


def _age_index(rng: np.random.Generator, timeline: _Timeline) -> IntArray:
    """Age band per encounter: drawn per patient, then never decreasing along the history."""
    base = _draw_int(rng, {i: w for i, w in enumerate(AGE_WEIGHTS.values())}, timeline.n_patients)
    steps = (rng.random(len(timeline.patient)) < AGE_BAND_STEP_PROBABILITY) & (timeline.earlier > 0)
    cumulative = np.cumsum(steps)
    before_patient: IntArray = (cumulative - steps)[timeline.earlier == 0]
    return np.minimum(base[timeline.patient] + cumulative - before_patient[timeline.patient], len(AGE_BANDS) - 1)


def _patient_frailty(rng: np.random.Generator, timeline: _Timeline) -> FloatArray:
    """A latent per-patient tendency to use care; patients with more encounters have more."""
    counts = np.bincount(timeline.patient)
    return rng.normal(0.0, 1.0, timeline.n_patients) + FRAILTY_PER_LOG_ENCOUNTERS * np.log(counts)


def _visit_counts(rng: np.random.Generator, timeline: _Timeline, frailty: FloatArray, visits: VisitModel) -> IntArray:
    # Poisson with a log-normal rate: the shared frailty makes the three visit counts correlate,
    # and the spread gives the real mix of many zeros and a long tail.
    noise = rng.normal(0.0, 1.0, len(timeline.patient))
    log_rate = visits.frailty_weight * frailty[timeline.patient] + visits.encounter_spread * noise
    spread = visits.frailty_weight**2 + visits.encounter_spread**2
    rate = visits.mean * np.exp(log_rate - spread / 2) * (1.0 + visits.per_earlier * timeline.earlier)
    return np.minimum(rng.poisson(rate), visits.maximum).astype(np.int64)


def _prior_year_visits(rng: np.random.Generator, timeline: _Timeline) -> dict[str, IntArray]:
    frailty = _patient_frailty(rng, timeline)
    # Most of a patient's recent earlier encounters fall in the prior year: inpatient visits.
    readmissions = rng.binomial(np.minimum(timeline.earlier, 6), EARLIER_ENCOUNTER_IN_PRIOR_YEAR)
    counts = {column: _visit_counts(rng, timeline, frailty, visits) for column, visits in VISIT_MODELS.items()}
    counts["number_inpatient"] = np.minimum(counts["number_inpatient"] + readmissions, 21)
    return counts


def _stay(rng: np.random.Generator, size: int) -> dict[str, IntArray]:
    """Length of stay and what happened during it; longer stays see more labs and drugs."""
    days = _draw_int(rng, TIME_IN_HOSPITAL_WEIGHTS, size)
    labs = np.rint(rng.normal(34.0 + 8.0 * np.log(days), 17.0))
    labs = np.where(rng.random(size) < 0.03, 1, labs)  # the real file has a spike at one test
    drug_mean = 10.7 + 1.2 * days
    drugs = rng.poisson(rng.gamma(7.0, drug_mean / 7.0))  # over-dispersed like the real counts
    return {
        "time_in_hospital": days,
        "num_lab_procedures": np.clip(labs, 1, 132).astype(np.int64),
        "num_procedures": _draw_int(rng, NUM_PROCEDURES_WEIGHTS, size),
        "num_medications": np.clip(drugs, 1, 81).astype(np.int64),
    }


def _admission(rng: np.random.Generator, size: int) -> dict[str, IntArray]:
    kind = _draw_int(rng, ADMISSION_TYPE_WEIGHTS, size)
    table = np.array([ADMISSION_SOURCE_BY_TYPE[t] for t in sorted(ADMISSION_SOURCE_BY_TYPE)])
    source = np.asarray(ADMISSION_SOURCE_VALUES)[_draw_by_group(rng, table, kind - 1)]
    return {"admission_type_id": kind, "admission_source_id": source.astype(np.int64)}


def _discharge(rng: np.random.Generator, age_index: IntArray, is_last: np.ndarray) -> IntArray:
    """Discharge disposition: post-acute care by age; death and hospice only on a last encounter."""
    size = len(age_index)
    post_acute = rng.random(size) < np.asarray(POST_ACUTE_SHARE_BY_AGE)[age_index]
    terminal = {k: w for k, w in OTHER_DISPOSITION_WEIGHTS.items() if k in DEATH_OR_HOSPICE_DISPOSITIONS}
    other_codes = np.asarray(list(OTHER_DISPOSITION_WEIGHTS), dtype=np.int64)
    other_weights = np.asarray(list(OTHER_DISPOSITION_WEIGHTS.values()))
    # Scaled so the overall rate of death and hospice stays the real one.
    last_weights = np.where(np.isin(other_codes, list(terminal)), other_weights * size / is_last.sum(), other_weights)
    alive_weights = np.where(np.isin(other_codes, list(terminal)), 0.0, other_weights)
    other = other_codes[_draw_by_group(rng, np.vstack([alive_weights, last_weights]), is_last.astype(np.int64))]
    return np.where(post_acute, _draw_int(rng, POST_ACUTE_WEIGHTS, size), other)


def _diagnoses(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    count = _draw_int(rng, NUMBER_DIAGNOSES_WEIGHTS, size)
    columns: dict[str, np.ndarray] = {"number_diagnoses": count}
    for position, (column, shares) in enumerate(ICD9_GROUP_SHARES.items(), start=1):
        # One flat table of (group share x code weight) so each position is one draw.
        flat: dict[str, float] = {}
        for group, share in shares.items():
            weights = ICD9_CODES[group]
            total = sum(weights.values())
            for code, weight in weights.items():
                flat[code] = flat.get(code, 0.0) + share * weight / total
        codes = _draw(rng, flat, size)
        missing = (count < position) | (rng.random(size) < DIAGNOSIS_MISSING_RATE[column])
        codes[missing] = None
        columns[column] = codes
    return columns


def _medications(rng: np.random.Generator, a1c: np.ndarray) -> dict[str, np.ndarray]:
    size = len(a1c)
    insulin_table = np.array([INSULIN_BY_A1C["other"], INSULIN_BY_A1C[">8"]])
    # Indices into MEDICATION_STATES (No, Steady, Up, Down); strings only at the end, as
    # comparing 23 object columns is several times slower than comparing small ints.
    state = {
        drug: _draw_by_group(rng, insulin_table, (a1c == ">8").astype(np.int64))
        if drug == "insulin"
        else rng.choice(len(MEDICATION_STATES), size=size, p=_probabilities(MEDICATION_WEIGHTS[drug]))
        for drug in MEDICATIONS
    }
    stacked = np.stack(list(state.values()))
    dose_changed = (stacked >= 2).any(axis=0)
    prescribed = (stacked >= 1).any(axis=0)
    switched = prescribed & (rng.random(size) < CHANGE_WITHOUT_DOSE_CHANGE)
    names = np.asarray(MEDICATION_STATES, dtype=object)
    return {
        **{drug: names[index] for drug, index in state.items()},
        "change": np.where(dose_changed | switched, "Ch", "No").astype(object),
        "diabetesMed": np.where(prescribed, "Yes", "No").astype(object),
    }


def _outcome(rng: np.random.Generator, frame: pd.DataFrame, earlier: IntArray) -> np.ndarray:
    within_30 = rng.random(len(frame)) < READMISSION_30D.probability(frame, earlier)
    later = rng.random(len(frame)) < READMISSION_LATER.probability(frame, earlier)
    return np.where(within_30, POSITIVE_LABEL, np.where(later, ">30", "NO")).astype(object)


def _canonical(columns: Mapping[str, np.ndarray], order: IntArray) -> pd.DataFrame:
    """Rows in calendar order, schema column order, ints as int64 and strings as object."""
    data: dict[str, pd.Series] = {}
    for name in COLUMN_NAMES:
        if name not in columns:
            continue
        values = columns[name][order]
        numeric = SPECS[name].kind in (ColumnKind.IDENTIFIER, ColumnKind.INTEGER, ColumnKind.CODE)
        data[name] = pd.Series(values, dtype=np.int64 if numeric else object)
    return pd.DataFrame(data)


def generate_cohort(rows: int, seed: int = 42) -> pd.DataFrame:
    """`rows` synthetic encounters in the UCI schema (all 50 columns, in order), sorted by
    encounter id, with a `readmitted` outcome drawn from the documented model. Deterministic in
    (`rows`, `seed`)."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    rng = np.random.default_rng(seed)
    timeline = _timeline(rng, rows)
    order = _calendar_order(rng, timeline)
    age_index = _age_index(rng, timeline)
    a1c = _draw(rng, A1C_WEIGHTS, rows)
    # Race, gender and payer are per patient and independent of everything (NOISE_COLUMNS).
    per_patient = {
        "race": _draw(rng, RACE_WEIGHTS, timeline.n_patients),
        "gender": _draw(rng, GENDER_WEIGHTS, timeline.n_patients),
        "payer_code": _draw(rng, PAYER_WEIGHTS, timeline.n_patients),
    }
    columns: dict[str, np.ndarray] = {
        PATIENT_ID: _patient_numbers(rng, timeline, order),
        **{name: values[timeline.patient] for name, values in per_patient.items()},
        "age": np.asarray(AGE_BANDS, dtype=object)[age_index],
        "weight": _draw(rng, WEIGHT_WEIGHTS, rows),
        **_admission(rng, rows),
        "discharge_disposition_id": _discharge(rng, age_index, timeline.is_last),
        **_stay(rng, rows),
        "medical_specialty": _draw(rng, SPECIALTY_WEIGHTS, rows),
        **_prior_year_visits(rng, timeline),
        **_diagnoses(rng, rows),
        "max_glu_serum": _draw(rng, GLUCOSE_WEIGHTS, rows),
        "A1Cresult": a1c,
        **_medications(rng, a1c),
    }
    frame = _canonical(columns, order)
    frame.insert(0, ENCOUNTER_ID, _increasing_ids(rng, rows, mean_gap=4_000, start=12_000))
    frame[TARGET] = pd.Series(_outcome(rng, frame, timeline.earlier[order]), dtype=object)
    return frame
