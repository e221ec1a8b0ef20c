"""Similar past patients: what the champion's training encounters with a similar risk profile went on
to do, as aggregates only.

Vectors are the encounters' SHAP contributions per risk factor (for readmission
`clinrisk.tasks.readmission.factors`, 28 numbers; for any other task one per declared feature
column; in log-odds). We chose them over standardised features because they are the model's own view of
an encounter: a field the model ignores contributes zero and so cannot make two patients look
alike or different, while a strong field weighs as much as it moves the risk. All dimensions
share one unit (log-odds), so plain Euclidean distance is meaningful without any scaling, and
the same vectors come from the serving code at promotion and at request time.

Only aggregates leave an index: k, the outcome rate with its Wilson interval, and counts of a
few coded fields (the task's: `clinrisk.taskspec.summary_fields`) in which rare values (fewer than
`MIN_CELL` encounters) are merged into "other".
A single past patient's record is never returned.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

MIN_NEIGHBOURS = 20
MIN_CELL = 5
Z_95 = 1.959963984540054


class SimilarPatients(BaseModel):
    """What the k nearest past encounters of the champion's training data went on to do."""

    k: int = Field(ge=MIN_NEIGHBOURS, description="How many similar past encounters were found.")
    readmitted: int = Field(ge=0, description="How many of them were readmitted within 30 days.")
    outcome_rate: float = Field(ge=0.0, le=1.0, description="Share readmitted within 30 days.")
    rate_ci_low: float = Field(ge=0.0, le=1.0, description="Wilson 95% interval, lower bound.")
    rate_ci_high: float = Field(ge=0.0, le=1.0, description="Wilson 95% interval, upper bound.")
    distributions: dict[str, dict[str, int]] = Field(
        description=f"Counts per value of a few fields; values held by fewer than {MIN_CELL} are merged into 'other'."
    )
    model_version: int = Field(description="The champion version whose training encounters were searched.")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good coverage at small n and rates near 0)."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(outcomes: Sequence[int], fields: Mapping[str, Sequence[str]], *, model_version: int) -> SimilarPatients:
    """The aggregate of the neighbours' outcomes (1 = readmitted) and field values."""
    k = len(outcomes)
    if k < MIN_NEIGHBOURS:
        raise ValueError(f"at least {MIN_NEIGHBOURS} neighbours are needed for an aggregate, got {k}")
    readmitted = int(sum(outcomes))
    low, high = wilson_interval(readmitted, k)
    return SimilarPatients(
        k=k,
        readmitted=readmitted,
        outcome_rate=readmitted / k,
        rate_ci_low=low,
        rate_ci_high=high,
        distributions={name: _suppressed(Counter(values)) for name, values in fields.items()},
        model_version=model_version,
    )


def _suppressed(counts: Counter[str]) -> dict[str, int]:
    kept = {value: n for value, n in counts.most_common() if n >= MIN_CELL}
    rare = sum(n for value, n in counts.items() if value not in kept)
    return kept | ({"other": kept.get("other", 0) + rare} if rare else {})
