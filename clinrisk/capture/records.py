"""One captured record: a flat row with a fixed set of columns, the same locally (Parquet) and
in the cloud (JSON lines that Firehose converts to Parquet through the Glue table).

Readmission's input fields are kept as entered, one column each (`f_<name>`, lowercase, because Glue
column names are); any other task's travel as text in one `inputs` map (`clinrisk.capture.task_inputs`;
docs/monitoring.md says why one schema for every task). Identifiers never appear, only their keyed
HMACs. Refused requests (422) are rows of kind `refused` with the JSON paths of their problems and no values.
Pure Python: this runs in the predict Lambda.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, FEATURE_COLUMNS, PATIENT_ID, ColumnKind, ColumnSpec

Source = Literal["api", "batch"]
Role = Literal["answer", "shadow"]
REFUSED_VERSION = 0  # refused requests were scored by no model

_INTEGER_KINDS = (ColumnKind.INTEGER, ColumnKind.CODE)


def field_column(spec: ColumnSpec) -> str:
    return "f_" + spec.field_name.lower()


FIELD_COLUMNS: dict[str, ColumnSpec] = {field_column(spec): spec for spec in FEATURE_COLUMNS}
INPUTS = "inputs"
INPUTS_TYPE = "map<string,string>"
# Column name → "int", "string", "double" or the inputs map; the Glue table and the Parquet schema read this.
CAPTURE_SCHEMA: dict[str, str] = {
    "kind": "string",
    "task": "string",
    "model_version": "int",
    "date": "string",
    "captured_at": "double",
    "request_id": "string",
    "source": "string",
    "role": "string",
    "record_key": "string",
    "patient_key": "string",
    "prior_encounters": "int",
    "probability": "double",
    "band": "string",
    "factors": "string",
    "refused_paths": "string",
    INPUTS: INPUTS_TYPE,
    **{name: "int" if spec.kind in _INTEGER_KINDS else "string" for name, spec in FIELD_COLUMNS.items()},
}
PARTITION_COLUMNS: tuple[str, ...] = ("task", "date", "model_version")


@dataclass(frozen=True)
class ScoredRecord:
    """What the scoring code hands to capture for one encounter (the keyer replaces the ids)."""

    record: Mapping[str, Any]
    prior_encounters: int
    probability: float
    band: str
    factors: Sequence[tuple[str, float]]
    # The record's and its patient's ids, for a task whose records are not readmission's encounters
    # (whose input fields the fixed capture columns do not hold: those records capture no fields).
    ids: tuple[str, str] | None = None
    # A generic task's input values as text (column name → value; missing values absent).
    inputs: Mapping[str, str] | None = None


def scored_row(item: ScoredRecord, *, keyed: tuple[str, str], common: Mapping[str, Any]) -> dict[str, Any]:
    record = item.record
    row: dict[str, Any] = {
        **common,
        "kind": "scored",
        "record_key": keyed[0],
        "patient_key": keyed[1],
        "prior_encounters": int(item.prior_encounters),
        "probability": float(item.probability),
        "band": item.band,
        "factors": json.dumps([[name, round(value, 6)] for name, value in item.factors]),
        "refused_paths": None,
        INPUTS: None if item.inputs is None else dict(item.inputs),
    }
    for column, spec in FIELD_COLUMNS.items():
        value = record.get(spec.name)
        row[column] = None if value is None else (int(value) if spec.kind in _INTEGER_KINDS else str(value))
    return row


def refused_row(paths: Sequence[str], *, common: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CAPTURE_SCHEMA)
    return row | {
        **common,
        "kind": "refused",
        "model_version": REFUSED_VERSION,
        "refused_paths": json.dumps(list(paths)),
    }


def identifiers(record: Mapping[str, Any]) -> tuple[str, str]:
    return str(record.get(ENCOUNTER_ID, "")), str(record.get(PATIENT_ID, ""))
