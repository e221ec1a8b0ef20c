"""The one feature implementation: training, batch scoring and single-record scoring all use
`feature_matrix`.

The transform is stateless: every encoding comes from the schema's fixed value sets and the
groupings below, never from statistics of a training set, so the same encounter always gets
the same features wherever it is scored. The only cross-row features are counts of a
patient's *earlier* encounters (by `encounter_id`); batch scoring computes them from the rows
given plus an optional history, and a single record is given its count.

The core works on plain numpy columns (object arrays for text, missing as None), one lookup
pass per source column, with text parsing cached per distinct value. It needs no pandas, so
the serving path stays small and a single record costs microseconds; `build_features` is the
thin pandas wrapper for tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from clinrisk.tasks.readmission.schema import (
    AGE_BANDS,
    DEATH_OR_HOSPICE_DISPOSITIONS,
    ENCOUNTER_ID,
    MEDICATIONS,
    PATIENT_ID,
    POSITIVE_LABEL,
    RACES,
    TARGET,
)

if TYPE_CHECKING:
    import pandas as pd

FEATURE_SCHEMA_VERSION = 1

COUNT_COLUMNS: tuple[str, ...] = (
    "time_in_hospital",
    "num_lab_procedures",
    "num_procedures",
    "num_medications",
    "number_outpatient",
    "number_emergency",
    "number_inpatient",
    "number_diagnoses",
)

# ICD-9 groups of Strack et al. 2014, in the order they are tested (first match wins).
ICD9_GROUPS: tuple[str, ...] = (
    "circulatory",
    "respiratory",
    "digestive",
    "diabetes",
    "injury",
    "musculoskeletal",
    "genitourinary",
    "neoplasms",
    "other",
)

# Discharge dispositions grouped by what they mean for follow-up care (IDs_mapping.csv).
DISCHARGE_GROUPS: dict[str, frozenset[int]] = {
    "home": frozenset({1}),
    "home_health": frozenset({6, 8}),
    "skilled_nursing": frozenset({3, 4, 24}),
    "other_inpatient_care": frozenset({2, 5, 9, 10, 15, 22, 23, 27, 28, 29, 30}),
    "outpatient_referral": frozenset({12, 16, 17}),
    "left_ama": frozenset({7}),
    "unknown": frozenset({18, 25, 26}),
    "death_or_hospice": DEATH_OR_HOSPICE_DISPOSITIONS,
}
ADMISSION_SOURCE_GROUPS: dict[str, frozenset[int]] = {
    "referral": frozenset({1, 2, 3}),
    "emergency_room": frozenset({7}),
    "transfer": frozenset({4, 5, 6, 10, 18, 19, 22, 25, 26}),
    "birth": frozenset({11, 12, 13, 14, 23, 24}),
    "unknown": frozenset({8, 9, 15, 17, 20, 21}),
}
ADMISSION_TYPE_GROUPS: dict[str, frozenset[int]] = {
    "emergency": frozenset({1}),
    "urgent": frozenset({2}),
    "elective": frozenset({3}),
    "other": frozenset({4, 7}),
    "unknown": frozenset({5, 6, 8}),
}
PAYER_GROUPS: dict[str, frozenset[str]] = {
    "medicare": frozenset({"MC"}),
    "medicaid": frozenset({"MD"}),
    "self_pay": frozenset({"SP"}),
    "private": frozenset({"BC", "HM", "CP", "UN", "CM", "OG", "PO", "DM", "CH", "WC", "OT", "MP", "SI", "FR"}),
}
# Specialties with enough encounters to learn from; the rest fall into "other".
SPECIALTY_PREFIXES: dict[str, tuple[str, ...]] = {
    "internal_medicine": ("InternalMedicine",),
    "emergency": ("Emergency",),
    "family_practice": ("Family/GeneralPractice",),
    "cardiology": ("Cardiology",),
    "surgery": ("Surgery", "Surgeon", "SurgicalSpecialty"),
    "nephrology": ("Nephrology",),
    "orthopedics": ("Orthopedics",),
    "radiology": ("Radiolog",),
    "pulmonology": ("Pulmonology",),
    "psychiatry": ("Psychiatry", "Psychology"),
    "oncology": ("Oncology", "Hematology"),
    "pediatrics": ("Pediatrics",),
}
A1C_LEVELS: dict[str, str] = {"norm": "Norm", "gt7": ">7", "gt8": ">8"}
GLUCOSE_LEVELS: dict[str, str] = {"norm": "Norm", "gt200": ">200", "gt300": ">300"}
DOSE_CHANGES: tuple[str, ...] = ("Up", "Down")


class FeatureSpec(BaseModel):
    name: str
    description: str


class FeatureSchema(BaseModel):
    """Saved beside the model: what the model's columns are, and a fingerprint of them."""

    version: int
    features: list[FeatureSpec]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def fingerprint(self) -> str:
        payload = json.dumps([self.version, self.names]).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


Columns = Mapping[str, np.ndarray]
Block = Callable[[Columns], np.ndarray]  # n rows in, an (n, k) float matrix out

PRIOR_ENCOUNTERS = "_prior_encounters"
_NOT_A_LEVEL = -1


@dataclass(frozen=True)
class _BlockSpec:
    """Features computed together from the same source columns, in schema order."""

    features: tuple[FeatureSpec, ...]
    compute: Block


def _spec(name: str, description: str) -> FeatureSpec:
    return FeatureSpec(name=name, description=description)


def _level_index(values: np.ndarray, table: Mapping[Any, int]) -> np.ndarray:
    """Position of each value in `table` (-1 when absent or missing); one dict lookup per row."""
    return np.fromiter(map(table.get, values, repeat(_NOT_A_LEVEL)), dtype=np.int64, count=len(values))


def _one_hot(index: np.ndarray, levels: int) -> np.ndarray:
    return (index[:, None] == np.arange(levels)).astype(float)


def _is_missing(values: np.ndarray) -> np.ndarray:
    return np.fromiter((v is None for v in values), dtype=bool, count=len(values))


def _grouped(prefix: str, column: str, groups: Mapping[str, Iterable[Any]], what: str) -> _BlockSpec:
    """One-hot of named groups of a column's values (a value outside every group is all zeros)."""
    table = {value: position for position, members in enumerate(groups.values()) for value in members}
    return _BlockSpec(
        tuple(_spec(f"{prefix}_{name}", f"{what}: {name.replace('_', ' ')}") for name in groups),
        lambda c: _one_hot(_level_index(c[column], table), len(groups)),
    )


def _flags(column: str, flags: Mapping[str, tuple[str, Sequence[Any]]]) -> _BlockSpec:
    """0/1 features, each true when the column holds one of its values."""
    tables = [dict.fromkeys(values, 0) for _, values in flags.values()]
    return _BlockSpec(
        tuple(_spec(name, description) for name, (description, _) in flags.items()),
        lambda c: np.column_stack([_level_index(c[column], t) == 0 for t in tables]).astype(float),
    )


def _counts() -> _BlockSpec:
    return _BlockSpec(
        tuple(_spec(column, f"{column} as recorded") for column in COUNT_COLUMNS),
        lambda c: np.column_stack([np.asarray(c[column], dtype=float) for column in COUNT_COLUMNS]),
    )


def _utilisation() -> _BlockSpec:
    visits = ("number_outpatient", "number_emergency", "number_inpatient")
    return _BlockSpec(
        (
            _spec("prior_year_visits", "outpatient, emergency and inpatient visits in the prior year"),
            _spec("prior_encounters", "this patient's earlier encounters in the data (by encounter id)"),
        ),
        lambda c: np.column_stack(
            [sum(np.asarray(c[v], dtype=float) for v in visits), np.asarray(c[PRIOR_ENCOUNTERS], dtype=float)]
        ),
    )


_AGE_INDEX = {band: i for i, band in enumerate(AGE_BANDS)}


def _demographics() -> list[_BlockSpec]:
    def age_band(c: Columns) -> np.ndarray:
        index = _level_index(c["age"], _AGE_INDEX).astype(float)
        return np.where(index == _NOT_A_LEVEL, np.nan, index)[:, None]

    return [
        _BlockSpec((_spec("age_band", "age band index (0 = [0-10), 9 = [90-100))"),), age_band),
        _flags("gender", {"gender_male": ("gender: male", ["Male"])}),
        _grouped("race", "race", {race.lower(): [race] for race in RACES}, "race"),
        _BlockSpec(
            (_spec("race_missing", "race: not recorded"), _spec("weight_recorded", "weight was recorded")),
            lambda c: np.column_stack([_is_missing(c["race"]), ~_is_missing(c["weight"])]).astype(float),
        ),
    ]


def _care_path() -> list[_BlockSpec]:
    return [
        _grouped("admission_type", "admission_type_id", ADMISSION_TYPE_GROUPS, "admission type"),
        _grouped("admission_source", "admission_source_id", ADMISSION_SOURCE_GROUPS, "admission source"),
        _grouped("discharge", "discharge_disposition_id", DISCHARGE_GROUPS, "discharged to"),
        _grouped("payer", "payer_code", PAYER_GROUPS, "payer"),
        _BlockSpec(
            (_spec("payer_missing", "payer: not recorded"),),
            lambda c: _is_missing(c["payer_code"]).astype(float)[:, None],
        ),
    ]


_SPECIALTY_GROUPS: tuple[str, ...] = (*SPECIALTY_PREFIXES, "missing")


@lru_cache(maxsize=4096)
def specialty_group(specialty: str | None) -> str:
    """The specialty group of a free-text specialty: first matching prefix, else "other"."""
    if specialty is None:
        return "missing"
    return next((name for name, prefixes in SPECIALTY_PREFIXES.items() if specialty.startswith(prefixes)), "other")


def _specialty() -> _BlockSpec:
    position = {name: i for i, name in enumerate(_SPECIALTY_GROUPS)}

    def compute(c: Columns) -> np.ndarray:
        index = np.fromiter(
            (position.get(specialty_group(v), _NOT_A_LEVEL) for v in c["medical_specialty"]),
            dtype=np.int64,
            count=len(c["medical_specialty"]),
        )
        return _one_hot(index, len(_SPECIALTY_GROUPS))

    return _BlockSpec(
        tuple(
            _spec(f"specialty_{name}", f"admitting specialty: {name.replace('_', ' ')}") for name in _SPECIALTY_GROUPS
        ),
        compute,
    )


_ICD9_RANGES: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("circulatory", ((390, 459), (785, 785))),
    ("respiratory", ((460, 519), (786, 786))),
    ("digestive", ((520, 579), (787, 787))),
    ("diabetes", ((250, 250),)),
    ("injury", ((800, 999),)),
    ("musculoskeletal", ((710, 739),)),
    ("genitourinary", ((580, 629), (788, 788))),
    ("neoplasms", ((140, 239),)),
)


@lru_cache(maxsize=8192)
def _icd9(code: str) -> tuple[int, float]:
    """(group position in ICD9_GROUPS, code as an ordered number) of one ICD-9 code."""
    letter = code[:1]
    try:
        number = float(code.lstrip("VE"))
    except ValueError:
        number = np.nan
    if letter in ("V", "E"):
        return len(ICD9_GROUPS) - 1, (1000 + number if letter == "V" else 2000 + number - 800)
    floor = np.floor(number)
    group = next(
        (i for i, (_, spans) in enumerate(_ICD9_RANGES) if any(lo <= floor <= hi for lo, hi in spans)),
        len(ICD9_GROUPS) - 1,
    )
    return group, number


def _parsed_icd9(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    parsed = [(_NOT_A_LEVEL, np.nan) if code is None else _icd9(code) for code in codes]
    groups = np.fromiter((g for g, _ in parsed), dtype=np.int64, count=len(parsed))
    return groups, np.fromiter((n for _, n in parsed), dtype=float, count=len(parsed))


def icd9_group(codes: Iterable[str | None]) -> list[str | None]:
    """The Strack et al. 2014 group of each ICD-9 code (None for a missing code)."""
    return [None if code is None else ICD9_GROUPS[_icd9(code)[0]] for code in codes]


def icd9_number(codes: Iterable[str | None]) -> np.ndarray:
    """The ICD-9 code as an ordered number (V codes at 1000+, E codes at 2000+; missing NaN), so
    trees can split on ranges finer than the nine groups (adjacent codes are related diseases)."""
    return _parsed_icd9(np.asarray(list(codes), dtype=object))[1]


def _diagnoses() -> _BlockSpec:
    k = len(ICD9_GROUPS)

    def compute(c: Columns) -> np.ndarray:
        parsed = [_parsed_icd9(c[column]) for column in ("diag_1", "diag_2", "diag_3")]
        primary = _one_hot(parsed[0][0], k)
        secondary = _one_hot(parsed[1][0], k) + _one_hot(parsed[2][0], k)
        return np.column_stack([primary, secondary, *(numbers for _, numbers in parsed)])

    return _BlockSpec(
        (
            *(_spec(f"diag1_{group}", f"primary diagnosis group: {group}") for group in ICD9_GROUPS),
            *(_spec(f"diag23_{group}", f"secondary diagnoses in group {group} (0-2)") for group in ICD9_GROUPS),
            *(
                _spec(f"{column}_code", f"{column} ICD-9 code as a number (V: 1000+, E: 2000+)")
                for column in ("diag_1", "diag_2", "diag_3")
            ),
        ),
        compute,
    )


def _medication_counts() -> _BlockSpec:
    changed = dict.fromkeys(DOSE_CHANGES, 1)
    prescribed = dict.fromkeys(("Steady", *DOSE_CHANGES), 1)

    def compute(c: Columns) -> np.ndarray:
        return np.column_stack(
            [
                sum(_level_index(c[drug], changed) == 1 for drug in MEDICATIONS),
                sum(_level_index(c[drug], prescribed) == 1 for drug in MEDICATIONS),
            ]
        ).astype(float)

    return _BlockSpec(
        (
            _spec("medication_dose_changes", "diabetic medications whose dose went up or down"),
            _spec("medications_prescribed", "diabetic medications prescribed"),
        ),
        compute,
    )


def _medications() -> list[_BlockSpec]:
    return [
        _medication_counts(),
        _grouped("insulin", "insulin", {"steady": ["Steady"], "up": ["Up"], "down": ["Down"]}, "insulin"),
        _flags("metformin", {"metformin_prescribed": ("metformin: prescribed", ["Steady", "Up", "Down"])}),
        _flags("change", {"any_medication_change": ("diabetic medication changed", ["Ch"])}),
        _flags("diabetesMed", {"diabetes_medication": ("diabetic medication prescribed", ["Yes"])}),
    ]


def _labs() -> list[_BlockSpec]:
    return [
        _grouped("a1c", "A1Cresult", {k: [v] for k, v in A1C_LEVELS.items()}, "HbA1c result"),
        _grouped("glucose", "max_glu_serum", {k: [v] for k, v in GLUCOSE_LEVELS.items()}, "max glucose serum"),
    ]


BLOCKS: tuple[_BlockSpec, ...] = (
    _counts(),
    _utilisation(),
    *_demographics(),
    *_care_path(),
    _specialty(),
    _diagnoses(),
    *_medications(),
    *_labs(),
)
FEATURE_SCHEMA = FeatureSchema(
    version=FEATURE_SCHEMA_VERSION, features=[spec for block in BLOCKS for spec in block.features]
)
FEATURE_NAMES: list[str] = FEATURE_SCHEMA.names
SOURCE_COLUMNS: tuple[str, ...] = (
    *COUNT_COLUMNS,
    "age", "gender", "race", "weight", "admission_type_id", "admission_source_id",
    "discharge_disposition_id", "payer_code", "medical_specialty", "diag_1", "diag_2", "diag_3",
    *MEDICATIONS, "change", "diabetesMed", "A1Cresult", "max_glu_serum",
)  # fmt: skip


def feature_matrix(columns: Columns) -> np.ndarray:
    """The model's input matrix (rows × FEATURE_NAMES) from raw columns: text columns as object
    arrays with None for missing, numbers as numeric arrays, plus `_prior_encounters`."""
    return np.column_stack([block.compute(columns) for block in BLOCKS])


def record_features(record: Mapping[str, Any], prior_encounters: int = 0) -> np.ndarray:
    """Features of one encounter (a dict keyed by UCI column names), as a 1 × F matrix."""
    columns = {name: np.array([record.get(name)], dtype=object) for name in SOURCE_COLUMNS}
    columns[PRIOR_ENCOUNTERS] = np.array([prior_encounters], dtype=float)
    return feature_matrix(columns)


# --------------------------------------------------------------------------- tables (pandas)


def prior_encounter_counts(frame: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.Series:
    """Per row of `frame`: how many encounters of the same patient have a smaller encounter id,
    looking at `frame` and `history` together (an encounter in both counts once)."""
    import pandas as pd

    keys = [PATIENT_ID, ENCOUNTER_ID]
    pool = frame[keys] if history is None else pd.concat([history[keys], frame[keys]], ignore_index=True)
    pool = pool.drop_duplicates(ENCOUNTER_ID).sort_values(keys, kind="stable")
    ranks = pd.Series(pool.groupby(PATIENT_ID).cumcount().to_numpy(), index=pool[ENCOUNTER_ID].to_numpy())
    return pd.Series(ranks.reindex(frame[ENCOUNTER_ID].to_numpy()).to_numpy(), index=frame.index)


def _text_column(values: pd.Series) -> np.ndarray:
    """An object array with None for every kind of missing (NaN, pd.NA, None)."""
    array = values.to_numpy(dtype=object, copy=True)
    array[values.isna().to_numpy()] = None
    return array


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The numpy columns `feature_matrix` reads, from a canonical encounter frame."""
    return {
        name: frame[name].to_numpy(dtype=float) if name in COUNT_COLUMNS else _text_column(frame[name])
        for name in SOURCE_COLUMNS
    }


def build_features(frame: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The model's input matrix for the encounters in `frame` (canonical encounter frame).

    `history` holds other encounters that may precede these (for a single record: that
    patient's earlier encounters); only their ids are read.
    """
    import pandas as pd

    columns = frame_columns(frame)
    columns[PRIOR_ENCOUNTERS] = prior_encounter_counts(frame, history).to_numpy(dtype=float)
    return pd.DataFrame(feature_matrix(columns), index=frame.index, columns=FEATURE_NAMES)


def trainable_mask(frame: pd.DataFrame) -> np.ndarray:
    """Rows a readmission model may learn from: not ended in death or hospice."""
    return ~frame["discharge_disposition_id"].isin(list(DEATH_OR_HOSPICE_DISPOSITIONS)).to_numpy(dtype=bool)


def readmitted_within_30_days(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(frame[TARGET] == POSITIVE_LABEL, dtype=np.int8)
