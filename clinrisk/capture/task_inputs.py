"""A generic task's input values as capture keeps them, and as its monitoring reference counts them.

Every task shares one capture schema: readmission's fields have their own columns (`f_<name>`),
and any other task's inputs travel in one `inputs` map of column name to text (docs/monitoring.md
says why). The text is `normalise_code` of the value, the form validation and the task file use for
codes (`4.0` -> `4`), so the training reference and serving's captures count the same strings.
Identifiers and the target are never kept; a missing value is an absent key.
Pure Python: this runs on the predict Lambda's capture thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from clinrisk.taskspec.spec import IdentifierColumn, TaskSpec, normalise_code


def captured_columns(spec: TaskSpec) -> list[str]:
    """The columns whose values a capture keeps: the model's inputs, then the subgroups' columns."""
    kept = [column.name for column in spec.feature_columns]
    never = {spec.record_id, spec.group_id, spec.target.column}
    never |= {column.name for column in spec.columns if isinstance(column, IdentifierColumn)}
    for subgroup in spec.subgroups:
        if subgroup.column not in kept and subgroup.column not in never:
            kept.append(subgroup.column)
    return kept


def input_values(columns: list[str], record: Mapping[str, Any]) -> dict[str, str]:
    """`record`'s values of `columns` as text; missing values (None, NaN) are left out."""
    values: dict[str, str] = {}
    for name in columns:
        value = record.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        values[name] = normalise_code(value)
    return values
