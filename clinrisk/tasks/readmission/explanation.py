"""Readmission's words for explanations: the outcome as the narrative and the prompt say it, each
factor's clinical terms for its retrieval query, and the coded fields its similar-patient
aggregates report. Any other task takes these from its task file (`clinrisk.explain.task_words`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

# How the prompt, the narrative and the queries name readmission's outcome.
RISK = "hospital readmission"
QUESTION_RISK = "30-day readmission"
OUTCOME = "readmission within 30 days"
HAPPENED = "were readmitted within 30 days"
HAPPENED_SHORT = "were readmitted"

# Factor labels name data columns ("time in hospital"); the literature says "length of stay".
# Each factor's clinical words go into its query, so retrieval meets the passages' vocabulary.
CLINICAL_TERMS: dict[str, str] = {
    "time_in_hospital": "length of stay",
    "num_lab_procedures": "laboratory tests",
    "num_procedures": "procedures during the stay",
    "num_medications": "number of medications",
    "number_outpatient": "outpatient clinic visits",
    "number_emergency": "emergency department visits",
    "number_inpatient": "earlier inpatient admissions",
    "number_diagnoses": "number of diagnoses comorbidity",
    "prior_year_visits": "total visits in the prior year",
    "prior_encounters": "earlier encounters repeated hospitalisation",
    "age": "age older patients",
    "gender": "sex men women",
    "race": "race",
    "weight": "body weight recorded",
    "admission_type_id": "admission type emergency elective",
    "admission_source_id": "admission source referral transfer",
    "discharge_disposition_id": "discharge disposition where the patient goes",
    "payer_code": "insurance payer",
    "medical_specialty": "admitting specialty",
    "diag_1": "primary diagnosis",
    "diag_2_3": "secondary diagnoses",
    "diabetic_medications": "diabetic medications dose changes",
    "insulin": "insulin",
    "metformin": "metformin oral agents",
    "change": "change of diabetic treatment",
    "diabetesMed": "diabetic medication prescribed",
    "A1Cresult": "HbA1c measurement",
    "max_glu_serum": "serum glucose",
}


def factor_query(factor: str, label: str, value: str) -> str:
    """The retrieval query for a factor: what it is in clinical words, its value, and the outcome."""
    terms = CLINICAL_TERMS.get(factor, "")
    return f"{label} ({terms}): {value}. How does {label} relate to {RISK}?"


# The coded fields whose distribution among similar past encounters is reported (codes, not values as entered).
SUMMARY_FIELDS: tuple[str, ...] = ("age", "discharge_group", "primary_diagnosis_group")


def summary_fields(encounters: pd.DataFrame) -> dict[str, npt.NDArray[np.str_]]:
    """The coded fields of each encounter: age band, discharge group, primary diagnosis group."""
    # Imported here: the promote function, which reads SUMMARY_FIELDS through the OpenSearch adapter, has no numpy.
    import numpy as np

    from clinrisk.tasks.readmission.features import DISCHARGE_GROUPS, icd9_group

    discharge = {code: name for name, codes in DISCHARGE_GROUPS.items() for code in codes}
    fields = {
        "age": encounters["age"].astype(str).to_numpy(dtype=str),
        "discharge_group": np.array([discharge.get(int(c), "other") for c in encounters["discharge_disposition_id"]]),
        "primary_diagnosis_group": np.array([g or "missing" for g in icd9_group(encounters["diag_1"].tolist())]),
    }
    assert tuple(fields) == SUMMARY_FIELDS
    return fields
