"""The generic feature matrix of a task: what every task gets from its declared columns alone.

- numeric: the value as is, missing as NaN (XGBoost learns where missing rows go);
- categorical: one 0/1 column per declared code (`cp=4`), in declared order; a missing code is
  all zeros, which the model can tell apart from every code;
- boolean: 0/1, missing as NaN.
The columns are fixed by the task file, not by the data, so every file of a task gives the same
matrix layout (a site that never saw a code still has its column).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clinrisk.taskspec.spec import CategoricalColumn, TaskSpec

if TYPE_CHECKING:
    import pandas as pd


def feature_names(task: TaskSpec) -> list[str]:
    names: list[str] = []
    for column in task.feature_columns:
        if isinstance(column, CategoricalColumn):
            names += [f"{column.name}={code}" for code in column.codes]
        else:
            names.append(column.name)
    return names


def feature_matrix(task: TaskSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The float64 matrix of a typed frame (from `clinrisk.data.task_tables`), columns `feature_names(task)`."""
    import pandas as pd

    parts: dict[str, np.ndarray] = {}
    for column in task.feature_columns:
        values = frame[column.name]
        if isinstance(column, CategoricalColumn):
            for code in column.codes:
                parts[f"{column.name}={code}"] = (values == code).to_numpy(dtype=np.float64)
        else:
            parts[column.name] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(parts, index=frame.index, columns=feature_names(task))
