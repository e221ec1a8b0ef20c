"""A heart-disease monitoring reference and capture rows made from synthetic records without a trained
model (as `helpers` does for readmission): scores from a fixed logistic function of the records, the
fields in the text form captures keep, the subgroups and codes from the task file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from clinrisk.capture.records import ScoredRecord, scored_row
from clinrisk.capture.task_inputs import captured_columns, input_values
from clinrisk.data.task_binding import resolve_task
from clinrisk.data.task_tables import validate_task_table
from clinrisk.monitoring.reference import MonitoringReference, build_reference, plain_value
from clinrisk.monitoring.task_reference import declared_fields
from clinrisk.serving.scoring import Bands, RiskFactor, Scored

HEART = "heart-disease"
SPEC = resolve_task(HEART).source.spec
BANDS = Bands(medium_from=0.3, high_from=0.5)


def heart_records(directory: Path, *, rows: int, seed: int, chol_shift: float = 0.0) -> list[dict[str, Any]]:
    task = resolve_task(HEART)
    typed = validate_task_table(SPEC, task.load(task.synthesize(directory, rows=rows, seed=seed))).frame
    records = [{str(k): plain_value(v) for k, v in row.items()} for row in typed.to_dict("records")]
    for record in records:
        if chol_shift and record["chol"] is not None:
            record["chol"] = min(record["chol"] + chol_shift, 600.0)
    return records


def scored(records: list[dict[str, Any]]) -> list[Scored]:
    margins = [0.04 * ((r["age"] or 55) - 55) + (1.0 if r["cp"] == "4" else -0.5) for r in records]
    probabilities = np.array([1 / (1 + math.exp(-m)) for m in margins])
    return [
        Scored(probability=float(p), band=band,
               factors=[RiskFactor(factor="cp", label="cp", value="", contribution=m, direction="increases")])
        for p, band, m in zip(probabilities, BANDS.of(probabilities), margins, strict=True)
    ]  # fmt: skip


def heart_reference(records: list[dict[str, Any]]) -> MonitoringReference:
    names = captured_columns(SPEC)
    inputs = [input_values(names, record) for record in records]
    kinds, codes = declared_fields(SPEC)
    columns = {name: [values.get(name) for values in inputs] for name in names}
    return build_reference(columns, scored(records), high_from=BANDS.high_from, kinds=kinds, categories=codes,
                           subgroups=SPEC.subgroups, captured_in="inputs")  # fmt: skip


def heart_capture_rows(records: list[dict[str, Any]], *, version: int, at: float, date: str) -> list[dict[str, Any]]:
    common = {"task": HEART, "model_version": version, "date": date, "captured_at": at, "request_id": "r",
              "source": "api", "role": "answer"}  # fmt: skip
    names = captured_columns(SPEC)
    return [
        scored_row(
            ScoredRecord(
                {},
                0,
                s.probability,
                s.band,
                [(f.factor, f.contribution) for f in s.factors],
                inputs=input_values(names, record),
            ),
            keyed=(f"k{i}", f"p{i}"),
            common=common,
        )
        for i, (record, s) in enumerate(zip(records, scored(records), strict=True))
    ]
