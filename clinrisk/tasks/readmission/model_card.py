"""The readmission task's words on its model card: what it predicts, for whom, and its limits.

`clinrisk.registry.tracking.model_card` writes the card; the metrics and the gate's reasons come
from the evaluation, these sentences from the task.
"""

from __future__ import annotations

TASK = "probability that a diabetic inpatient is readmitted within 30 days of discharge."
POPULATION = (
    "encounters in the UCI Diabetes 130-US hospitals schema; encounters ending in death"
    " or hospice are excluded. Test patients never appear in training or validation."
)
# Shown on the card and returned with every explanation (POST /v1/explain).
INTENDED_USE = (
    "Decision support for care teams planning the discharge of adult diabetic inpatients: an estimate of the"
    " probability of readmission within 30 days, trained on 1999–2008 US hospital data and not validated"
    " prospectively. It is not a diagnosis and does not recommend treatment or dosing; clinical judgement decides."
)
LIMITS = (
    "trained on 1999–2008 US hospital data; not validated prospectively; subgroup metrics"
    " are in `evaluation.json`. A decision-support score, not a diagnosis."
)
