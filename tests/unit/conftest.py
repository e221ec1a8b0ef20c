"""Small hand-made encounter tables for unit tests (no real data needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clinrisk.data.tables import write_table
from clinrisk.tasks.readmission.schema import COLUMN_NAMES, COLUMNS, MEDICATIONS, ColumnKind

WriteCsv = Callable[[pd.DataFrame], Path]

_WHOLE_NUMBER_KINDS = {ColumnKind.IDENTIFIER, ColumnKind.INTEGER, ColumnKind.CODE}

# One plausible encounter; each row below overrides a few columns.
_BASE_ROW: dict[str, Any] = {
    "race": "Caucasian",
    "gender": "Female",
    "age": "[60-70)",
    "weight": None,
    "admission_type_id": 1,
    "discharge_disposition_id": 1,
    "admission_source_id": 7,
    "time_in_hospital": 3,
    "payer_code": None,
    "medical_specialty": None,
    "num_lab_procedures": 41,
    "num_procedures": 0,
    "num_medications": 12,
    "number_outpatient": 0,
    "number_emergency": 0,
    "number_inpatient": 0,
    "diag_1": "428",
    "diag_2": "250.01",
    "diag_3": "401",
    "number_diagnoses": 9,
    "max_glu_serum": "None",
    "A1Cresult": "None",
    **dict.fromkeys(MEDICATIONS, "No"),
    "change": "No",
    "diabetesMed": "No",
    "readmitted": "NO",
}

_ROWS: list[dict[str, Any]] = [
    {"encounter_id": 101, "patient_nbr": 11, "readmitted": "<30", "insulin": "Up", "change": "Ch"},
    {"encounter_id": 102, "patient_nbr": 12, "race": None, "gender": "Male", "diag_3": None},
    {"encounter_id": 103, "patient_nbr": 11, "readmitted": ">30", "weight": "[75-100)", "payer_code": "MC"},
    {"encounter_id": 104, "patient_nbr": 13, "age": "[80-90)", "diag_1": "V57", "A1Cresult": ">8"},
    {"encounter_id": 105, "patient_nbr": 14, "diag_2": "E885", "medical_specialty": "Cardiology"},
    {"encounter_id": 106, "patient_nbr": 15, "readmitted": "<30", "max_glu_serum": ">300"},
]


@pytest.fixture
def valid_rows() -> pd.DataFrame:
    """Six valid encounters of both 30-day classes, as a canonical frame."""
    # dtype=object keeps Python str and None: pandas would infer its own string dtype and NaN.
    frame = pd.DataFrame([{**_BASE_ROW, **row} for row in _ROWS], columns=list(COLUMN_NAMES), dtype=object)
    return frame.astype({spec.name: "int64" for spec in COLUMNS if spec.kind in _WHOLE_NUMBER_KINDS})


@pytest.fixture
def write_csv(tmp_path: Path) -> WriteCsv:
    """Write a frame to a CSV file in the UCI layout (`?` for missing) and return its path."""

    def write(frame: pd.DataFrame) -> Path:
        path = tmp_path / "encounters.csv"
        write_table(frame, path)
        return path

    return write
