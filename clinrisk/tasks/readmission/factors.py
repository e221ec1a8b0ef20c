"""Risk factors: the model's features regrouped by the input fields a clinician recognises.

Several features come from one field (the nine one-hot columns of the discharge disposition,
the group and code number of the primary diagnosis), so per-feature SHAP values would split
one fact into many small, unreadable parts. SHAP values are additive, so the contribution of
a group of features is exactly the sum of theirs; a factor is such a group, shown with the
value of its fields as entered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clinrisk.tasks.readmission.features import (
    ADMISSION_SOURCE_GROUPS,
    ADMISSION_TYPE_GROUPS,
    COUNT_COLUMNS,
    DISCHARGE_GROUPS,
    FEATURE_NAMES,
    icd9_group,
    specialty_group,
)
from clinrisk.tasks.readmission.schema import MEDICATIONS

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Factor:
    name: str
    label: str
    feature_prefixes: tuple[str, ...]
    describe: Callable[[Record, int], str]  # (encounter, prior encounters) -> the value as read


def _as_entered(field: str, missing: str = "not recorded") -> Callable[[Record, int], str]:
    return lambda r, _: missing if r.get(field) is None else str(r[field])


def _coded(field: str, groups: Mapping[str, frozenset[int]]) -> Callable[[Record, int], str]:
    def describe(r: Record, _: int) -> str:
        code = r.get(field)
        group = next((name for name, members in groups.items() if code in members), "unmapped")
        return f"{code} ({group.replace('_', ' ')})"

    return describe


def _diagnosis(*fields: str) -> Callable[[Record, int], str]:
    def describe(r: Record, _: int) -> str:
        codes = [r.get(f) for f in fields]
        return ", ".join(f"{c} ({g})" for c, g in zip(codes, icd9_group(codes), strict=True) if c is not None) or "none"

    return describe


def _medications(r: Record, _: int) -> str:
    prescribed = [drug for drug in MEDICATIONS if r.get(drug) in ("Steady", "Up", "Down")]
    changed = [drug for drug in prescribed if r.get(drug) in ("Up", "Down")]
    return f"{len(prescribed)} prescribed, {len(changed)} dose changes"


def _visits(r: Record, _: int) -> str:
    return str(sum(int(r.get(f) or 0) for f in ("number_outpatient", "number_emergency", "number_inpatient")))


FACTORS: tuple[Factor, ...] = (
    *(Factor(c, c.replace("_", " "), (c,), _as_entered(c)) for c in COUNT_COLUMNS),
    Factor("prior_year_visits", "all visits in the prior year", ("prior_year_visits",), _visits),
    Factor("prior_encounters", "earlier encounters of this patient", ("prior_encounters",), lambda _, n: str(n)),
    Factor("age", "age band", ("age_band",), _as_entered("age")),
    Factor("gender", "gender", ("gender_",), _as_entered("gender")),
    Factor("race", "race", ("race_",), _as_entered("race")),
    Factor(
        "weight", "weight", ("weight_recorded",), lambda r, _: "not recorded" if r.get("weight") is None else "recorded"
    ),
    Factor(
        "admission_type_id", "admission type", ("admission_type_",), _coded("admission_type_id", ADMISSION_TYPE_GROUPS)
    ),
    Factor(
        "admission_source_id",
        "admission source",
        ("admission_source_",),
        _coded("admission_source_id", ADMISSION_SOURCE_GROUPS),
    ),
    Factor(
        "discharge_disposition_id",
        "discharged to",
        ("discharge_",),
        _coded("discharge_disposition_id", DISCHARGE_GROUPS),
    ),
    Factor("payer_code", "payer", ("payer_",), _as_entered("payer_code")),
    Factor(
        "medical_specialty",
        "admitting specialty",
        ("specialty_",),
        lambda r, _: f"{r.get('medical_specialty') or 'not recorded'} ({specialty_group(r.get('medical_specialty'))})",
    ),
    Factor("diag_1", "primary diagnosis", ("diag1_", "diag_1_code"), _diagnosis("diag_1")),
    Factor(
        "diag_2_3", "secondary diagnoses", ("diag23_", "diag_2_code", "diag_3_code"), _diagnosis("diag_2", "diag_3")
    ),
    Factor(
        "diabetic_medications",
        "diabetic medications",
        ("medication_dose_changes", "medications_prescribed"),
        _medications,
    ),
    Factor("insulin", "insulin", ("insulin_",), _as_entered("insulin")),
    Factor("metformin", "metformin", ("metformin_",), _as_entered("metformin")),
    Factor("change", "any diabetic medication change", ("any_medication_change",), _as_entered("change")),
    Factor("diabetesMed", "diabetic medication prescribed", ("diabetes_medication",), _as_entered("diabetesMed")),
    Factor("A1Cresult", "HbA1c result", ("a1c_",), _as_entered("A1Cresult", "not measured")),
    Factor("max_glu_serum", "max glucose serum", ("glucose_",), _as_entered("max_glu_serum", "not measured")),
)


def _factor_of(feature: str) -> int:
    matches = [i for i, f in enumerate(FACTORS) if feature.startswith(f.feature_prefixes)]
    if len(matches) != 1:
        raise LookupError(f"feature {feature!r} belongs to {len(matches)} factors, not one")
    return matches[0]


def factor_membership(features: list[str] = FEATURE_NAMES) -> npt.NDArray[np.float64]:
    """(features × factors) 0/1 matrix: contributions @ membership = factor contributions."""
    membership = np.zeros((len(features), len(FACTORS)))
    for row, feature in enumerate(features):
        membership[row, _factor_of(feature)] = 1.0
    return membership
