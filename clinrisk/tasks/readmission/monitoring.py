"""Readmission's side of its monitoring reference (`clinrisk.monitoring.reference.reference_for_frame`):
the encounters as serving receives them, their prior-encounter counts, the monitored fields (the
encounter schema's, plus prior encounters) and the fairness attributes, as the gate's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinrisk.tasks.readmission.features import prior_encounter_counts
from clinrisk.tasks.readmission.schema import FEATURE_COLUMNS, TARGET, Encounter

if TYPE_CHECKING:
    import pandas as pd

PRIOR_FIELD = "prior_encounters"
SUBGROUP_FIELDS: dict[str, str] = {"race": "race", "gender": "gender", "age_band": "age"}  # attribute → field


@dataclass(frozen=True)
class ReferenceInputs:
    records: list[dict[str, Any]]  # as serving scores them (`Encounter.to_record`)
    priors: list[int]
    columns: dict[str, Sequence[Any]]  # each monitored field's values


def reference_inputs(frame: pd.DataFrame, rows: Sequence[dict[str, Any]]) -> ReferenceInputs:
    """`rows`: the frame's encounters with plain cells (None for missing); the outcome is left out."""
    priors = prior_encounter_counts(frame).astype(int).tolist()
    records = [Encounter.model_validate({k: v for k, v in row.items() if k != TARGET}).to_record() for row in rows]
    columns: dict[str, Sequence[Any]] = {spec.name: [r.get(spec.name) for r in records] for spec in FEATURE_COLUMNS}
    columns[PRIOR_FIELD] = priors
    return ReferenceInputs(records=records, priors=priors, columns=columns)
