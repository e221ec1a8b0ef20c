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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel

from clinrisk.monitoring.fields import FieldBins, FieldKind, field_kinds, reference_bins
from clinrisk.tasks.readmission.monitoring import SUBGROUP_FIELDS
from clinrisk.taskspec.spec import Subgroup

if TYPE_CHECKING:
    import pandas as pd

    from clinrisk.serving.scoring import Scored

REFERENCE_FILE = "monitoring_reference.json"
_MAX_SCORES = 20_000
_TASK_FIELDS = ("captured_in", "subgroups")
CapturedIn = Literal["columns", "inputs"]


class MonitoringReference(BaseModel):
    rows: int
    fields: dict[str, FieldBins]
    scores: list[float]  # the reference probabilities, sorted (a sample when there are many)
    high_from: float
    attribution: dict[str, float]  # mean |SHAP| per factor over the top factors serving returns
    subgroup_high_rates: dict[str, dict[str, float]]
    # Where captures hold the fields: readmission's own columns (`f_<name>`), or any other task's
    # `inputs` map (clinrisk.capture.task_inputs).
    captured_in: CapturedIn = "columns"
    # The fairness attributes of `subgroup_high_rates`; None in references written before tasks
    # (readmission's), whose subgroups are its task file's.
    subgroups: list[Subgroup] | None = None

    def high_risk_rate(self, high_from: float) -> float:
        scores = np.asarray(self.scores)
        return float((scores >= high_from).mean()) if scores.size else 0.0

    def save(self, directory: Path) -> None:
        # Left at their defaults (readmission's), the task fields are not written: its file stays as it was.
        defaults = {name for name in _TASK_FIELDS if getattr(self, name) == type(self).model_fields[name].default}
        (directory / REFERENCE_FILE).write_text(self.model_dump_json(exclude=defaults))

    @classmethod
    def load(cls, directory: Path) -> MonitoringReference:
        return cls.model_validate_json((directory / REFERENCE_FILE).read_text())


def value_counts(values: Sequence[Any] | np.ndarray) -> Counter[Any]:
    """Counts per distinct value, with every missing value (None, NaN) under None."""
    return Counter(None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values)


def build_reference(
    columns: Mapping[str, Sequence[Any]],
    scored: Sequence[Scored],
    *,
    high_from: float,
    kinds: Mapping[str, FieldKind] | None = None,
    categories: Mapping[str, list[str]] | None = None,
    subgroups: Sequence[Subgroup] | None = None,
    captured_in: CapturedIn = "columns",
) -> MonitoringReference:
    """`columns`: the scored records' input fields, by name; `kinds`: how each field is binned
    (readmission's fields when None); `categories`: a categorical field's declared codes;
    `subgroups`: the fairness attributes (readmission's when None)."""
    declared = categories or {}
    fields = {
        name: reference_bins(kind, value_counts(columns[name]), categories=declared.get(name))
        for name, kind in (kinds or field_kinds()).items()
    }
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
            subgroup.name: group_rates(subgroup_keys(subgroup, columns[subgroup.column]), high)
            for subgroup in (subgroups if subgroups is not None else readmission_subgroups())
        },
        captured_in=captured_in,
        subgroups=None if subgroups is None else list(subgroups),
    )


def readmission_subgroups() -> list[Subgroup]:
    return [Subgroup(name=attribute, column=field) for attribute, field in SUBGROUP_FIELDS.items()]


def reference_subgroups(reference: MonitoringReference) -> list[Subgroup]:
    """The fairness attributes the reference's subgroup rates are over."""
    return reference.subgroups if reference.subgroups is not None else readmission_subgroups()


def subgroup_keys(subgroup: Subgroup, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Each record's level of `subgroup` as text (binned where the task file says so); missing: None."""
    if subgroup.bins is None:
        return np.asarray(values, dtype=object)
    import pandas as pd

    from clinrisk.data.generic_task import subgroup_levels

    return subgroup_levels(subgroup, pd.Series(np.asarray(values, dtype=object)))


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
    make readmission's reference. The training job calls this with the validation channel."""
    from clinrisk.serving.scoring import Bands, ServingModel
    from clinrisk.settings import Settings
    from clinrisk.tasks.readmission.monitoring import reference_inputs

    settings = Settings()
    model = ServingModel.load(model_dir, name="reference", version=0, checksum="")
    rows = [{str(k): plain_value(v) for k, v in row.items()} for row in frame.to_dict("records")]
    inputs = reference_inputs(frame, rows)
    bands = Bands.from_settings(settings)
    scored = model.score(inputs.records, inputs.priors, bands=bands, top_k=settings.serving.top_factors)
    return build_reference(inputs.columns, scored, high_from=bands.high_from)


def plain_value(value: Any) -> Any:
    """A frame cell as the API receives it: None for missing, Python numbers rather than numpy's."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
