"""Readmission's words for explanations: the outcome as the narrative and the prompt say it, and the
coded fields its similar-patient aggregates report. Each factor's clinical terms for its retrieval
query are in the task file (`factor_terms` in task.yaml), as any task's are (`clinrisk.explain.task_words`).
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
