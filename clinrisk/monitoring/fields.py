"""How each input field is binned for drift, on the reference's own bins.

Numbers (counts, lengths of stay, prior encounters) get the reference's quantile cut points,
with open end bins, as `clinrisk.data.baseline` bins features. Closed value sets (categories, codes)
get one bin per value; ICD-9 codes are binned by their diagnosis group (Strack et al.), free
text by its most common values plus one `other` bin. Missing values always get a bin of their own.

Everything works on counts of distinct values, so a window of a million records is binned by
mapping its few hundred distinct values, not every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import BaseModel

from clinrisk.tasks.readmission.features import icd9_group
from clinrisk.tasks.readmission.monitoring import PRIOR_FIELD
from clinrisk.tasks.readmission.schema import FEATURE_COLUMNS, ColumnKind, ColumnSpec

NUMERIC_BINS = 10
TEXT_TOP_VALUES = 30  # covers every closed value set (discharge codes: 30)
OTHER = "__other__"

FieldKind = Literal["numeric", "categorical", "icd9"]


def field_kinds() -> dict[str, FieldKind]:
    """Every input field the monitor watches, with how it is binned."""
    kinds: dict[str, FieldKind] = {}
    for spec in FEATURE_COLUMNS:
        kinds[spec.name] = _kind(spec)
    kinds[PRIOR_FIELD] = "numeric"
    return kinds


def _kind(spec: ColumnSpec) -> FieldKind:
    if spec.kind is ColumnKind.INTEGER:
        return "numeric"
    return "icd9" if spec.kind is ColumnKind.ICD9 else "categorical"


class FieldBins(BaseModel):
    """One field's bins and the reference's share in each (the last bin holds missing values)."""

    kind: FieldKind
    edges: list[float] = []
    categories: list[str] = []
    seen: list[str] = []
    proportions: list[float]
    rows: int

    @property
    def missing(self) -> float:
        return self.proportions[-1]

    @property
    def bins(self) -> int:
        return len(self.proportions)

    def binned(self, counts: Mapping[object, int]) -> np.ndarray:
        """Counts per bin of a window, given its counts per distinct value (None: missing)."""
        out = np.zeros(self.bins)
        present = {value: n for value, n in counts.items() if value is not None}
        out[-1] = sum(n for value, n in counts.items() if value is None)
        if not present:
            return out
        values = list(present)
        tally = np.fromiter(present.values(), dtype=float, count=len(present))
        if self.kind == "numeric":
            index = np.searchsorted(np.asarray(self.edges), np.asarray(values, dtype=float), side="right")
        else:
            index = np.asarray(self._category_index([str(v) for v in values]))
        np.add.at(out, index, tally)
        return out

    def _category_index(self, values: list[str]) -> list[int]:
        labels = icd9_group(values) if self.kind == "icd9" else values
        position = {category: i for i, category in enumerate(self.categories)}
        other = position.get(OTHER, len(self.categories) - 1)
        return [position.get(str(label), other) for label in labels]

    def unseen(self, counts: Mapping[object, int]) -> float:
        """Share of present values the reference never saw (categorical fields)."""
        if self.kind == "numeric":
            return 0.0
        seen = set(self.seen)
        present = {str(v): n for v, n in counts.items() if v is not None}
        total = sum(present.values())
        return sum(n for v, n in present.items() if v not in seen) / total if total else 0.0


def reference_bins(kind: FieldKind, counts: Mapping[object, int], *, categories: list[str] | None = None) -> FieldBins:
    """Bins for a field from the reference's counts per distinct value. `categories`: a categorical
    field's declared codes (a task file's), each its own bin even when the reference never saw it."""
    present = {v: n for v, n in counts.items() if v is not None}
    rows = sum(counts.values())
    if kind == "numeric":
        values = np.repeat(np.asarray(list(present), dtype=float), list(present.values()))
        edges = (
            np.unique(np.quantile(values, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])).tolist() if values.size else []
        )
        bins = FieldBins(kind=kind, edges=edges, proportions=[0.0] * (len(edges) + 2), rows=rows)
    else:
        seen = sorted(str(v) for v in present)
        declared = [*categories, OTHER] if categories is not None else _categories(kind, present)
        bins = FieldBins(kind=kind, categories=declared, seen=seen, proportions=[], rows=rows)
        bins.proportions = [0.0] * (len(bins.categories) + 1)
    binned = bins.binned(counts)
    bins.proportions = (binned / max(rows, 1)).tolist()
    return bins


def _categories(kind: FieldKind, present: Mapping[object, int]) -> list[str]:
    if kind == "icd9":
        from clinrisk.tasks.readmission.features import ICD9_GROUPS

        return list(ICD9_GROUPS)
    # Values outside the top ones, and values the reference never saw, share the `other` bin.
    ranked = sorted(present, key=lambda v: (-present[v], str(v)))
    return [*sorted(str(v) for v in ranked[:TEXT_TOP_VALUES]), OTHER]
