"""The monitoring reference of one model version: what its inputs, scores and attributions looked
like on held-out rows when nothing had drifted. Written beside the model by the training job
(`monitoring_reference.json`), from the validation channel scored by the trained model exactly as
serving scores it; read by the monitor for that version.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from clinrisk.monitoring.fields import PRIOR_FIELD, FieldBins, field_kinds, reference_bins

if TYPE_CHECKING:
    import pandas as pd

    from clinrisk.serving.scoring import Scored

REFERENCE_FILE = "monitoring_reference.json"
SUBGROUP_FIELDS: dict[str, str] = {"race": "race", "gender": "gender", "age_band": "age"}  # as the gate's
_MAX_SCORES = 20_000


class MonitoringReference(BaseModel):
    rows: int
    fields: dict[str, FieldBins]
    scores: list[float]  # the reference probabilities, sorted (a sample when there are many)
    high_from: float
    attribution: dict[str, float]  # mean |SHAP| per factor over the top factors serving returns
    subgroup_high_rates: dict[str, dict[str, float]]

    def high_risk_rate(self, high_from: float) -> float:
        scores = np.asarray(self.scores)
        return float((scores >= high_from).mean()) if scores.size else 0.0

    def save(self, directory: Path) -> None:
        (directory / REFERENCE_FILE).write_text(self.model_dump_json())

    @classmethod
    def load(cls, directory: Path) -> MonitoringReference:
        return cls.model_validate_json((directory / REFERENCE_FILE).read_text())


def value_counts(values: Sequence[Any] | np.ndarray) -> Counter[Any]:
    """Counts per distinct value, with every missing value (None, NaN) under None."""
    return Counter(None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values)


def build_reference(
    columns: Mapping[str, Sequence[Any]], scored: Sequence[Scored], *, high_from: float
) -> MonitoringReference:
    """`columns`: the scored encounters' input fields (UCI names, plus `prior_encounters`)."""
    fields = {name: reference_bins(kind, value_counts(columns[name])) for name, kind in field_kinds().items()}
    probabilities = np.sort(np.asarray([s.probability for s in scored], dtype=float))
    if probabilities.size > _MAX_SCORES:
        probabilities = probabilities[np.linspace(0, probabilities.size - 1, _MAX_SCORES).astype(int)]
    high = np.asarray([s.band == "high" for s in scored])
    return MonitoringReference(
        rows=len(scored),
        fields=fields,
        scores=[round(float(p), 6) for p in probabilities],
        high_from=high_from,
        attribution=mean_attribution(json.dumps([[f.factor, f.contribution] for f in s.factors]) for s in scored),
        subgroup_high_rates={
            attribute: group_rates(np.asarray(columns[field], dtype=object), high)
            for attribute, field in SUBGROUP_FIELDS.items()
        },
    )


def mean_attribution(factor_lists: Any) -> dict[str, float]:
    """Mean |SHAP| per factor over records; a factor outside a record's top list counts as 0 there."""
    totals: dict[str, float] = {}
    records = 0
    for text in factor_lists:
        records += 1
        for name, value in json.loads(text):
            totals[name] = totals.get(name, 0.0) + abs(float(value))
    return {name: total / records for name, total in sorted(totals.items())} if records else {}


def group_rates(levels: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    keys = np.asarray(["missing" if level is None else str(level) for level in levels])
    return {str(level): float(flagged[keys == level].mean()) for level in np.unique(keys)}


def reference_for_frame(model_dir: Path, frame: pd.DataFrame) -> MonitoringReference:
    """Score `frame` (canonical encounters) with the model in `model_dir` as serving would, and
    make its reference. The training job calls this with the validation channel."""
    from clinrisk.serving.scoring import Bands, ServingModel
    from clinrisk.settings import Settings
    from clinrisk.tasks.readmission.features import prior_encounter_counts
    from clinrisk.tasks.readmission.schema import FEATURE_COLUMNS, Encounter

    settings = Settings()
    model = ServingModel.load(model_dir, name="reference", version=0, checksum="")
    priors = prior_encounter_counts(frame).astype(int).tolist()
    records = [
        Encounter.model_validate({k: _plain(v) for k, v in row.items()}).to_record()
        for row in frame.drop(columns=["readmitted"], errors="ignore").to_dict("records")
    ]
    bands = Bands.from_settings(settings)
    scored = model.score(records, priors, bands=bands, top_k=settings.serving.top_factors)
    columns: dict[str, Sequence[Any]] = {spec.name: [r.get(spec.name) for r in records] for spec in FEATURE_COLUMNS}
    columns[PRIOR_FIELD] = priors
    return build_reference(columns, scored, high_from=bands.high_from)


def _plain(value: Any) -> Any:
    """A frame cell as the API receives it: None for missing, Python numbers rather than numpy's."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
