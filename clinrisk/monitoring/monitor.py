"""The monitor: one window of captured records of one model version against that version's reference.

One code path: `clinrisk monitor run` locally and the monitor Lambda on its schedule call
`monitor_window` and publish `emf_records` of the result. Below `min_window` scored records the
result is marked unpublished and carries no metrics, so alarms see missing data (not breaching).

A field drifts when its PSI is above both `psi_threshold` and its noise level: the critical PSI
of a same-distribution window of this size at `drift_alpha`, split (Bonferroni) over the fields.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from clinrisk.capture.records import FIELD_COLUMNS, INPUTS
from clinrisk.monitoring.fields import PRIOR_FIELD
from clinrisk.monitoring.reference import (
    CapturedIn,
    MonitoringReference,
    mean_attribution,
    reference_subgroups,
    subgroup_keys,
)
from clinrisk.monitoring.stats import expected_auc, js_distance, ndcg, psi, psi_critical, shares
from clinrisk.settings import MonitoringRules
from clinrisk.taskspec.spec import Subgroup

if TYPE_CHECKING:
    import pyarrow as pa

ATTRIBUTION_SAMPLE = 50_000  # parsing factor lists is the slow part; the ranking is stable long before this
SCORE_BINS = 10
COLUMN_OF: dict[str, str] = {spec.name: column for column, spec in FIELD_COLUMNS.items()} | {
    PRIOR_FIELD: "prior_encounters"
}


class FieldDrift(BaseModel):
    field: str
    kind: str
    psi: float
    critical: float
    drifted: bool
    js_distance: float | None
    missing_reference: float
    missing_current: float
    unseen_share: float
    reference_shares: list[float]
    current_shares: list[float]
    labels: list[str]


class MonitorResult(BaseModel):
    task: str
    model_version: int
    window_start: datetime
    window_end: datetime
    rows: int
    published: bool
    reason: str
    fields: list[FieldDrift] = []
    feature_drift: float | None = None
    drifted_fields: list[str] = []
    score_psi: float | None = None
    score_critical: float | None = None
    score_shares: list[float] = []
    reference_score_shares: list[float] = []
    high_risk_rate: float | None = None
    expected_high_risk_rate: float | None = None
    attribution_ndcg: float | None = None
    estimated_auc: float | None = None
    reference_estimated_auc: float | None = None
    expected_positive_rate: float | None = None
    refused_requests: int = 0
    refused_share: float | None = None
    refused_by_field: dict[str, float] = {}
    subgroup_high_rates: dict[str, dict[str, float]] = {}
    reference_subgroup_high_rates: dict[str, dict[str, float]] = {}

    @property
    def drift(self) -> bool:
        return bool(self.drifted_fields)


def column_counts(table: pa.Table, column: str) -> Counter[Any]:
    """Counts per distinct value of one column (None: missing), computed in Arrow."""
    return value_counts(table.column(column))


def value_counts(values: pa.ChunkedArray | pa.Array) -> Counter[Any]:
    import pyarrow.compute as pc

    counted = pc.value_counts(values).to_pylist()
    return Counter({entry["values"]: entry["counts"] for entry in entry_list(counted)})


def field_values(scored: pa.Table, captured_in: CapturedIn, name: str, *, numeric: bool) -> pa.ChunkedArray:
    """One input field's captured values: readmission's own column, or a task's `inputs` map entry
    (text; a numeric field's cast back to numbers, missing as null)."""
    if captured_in == "columns":
        return scored.column(COLUMN_OF[name])
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.map_lookup(scored.column(INPUTS), pa.scalar(name), "first")
    return pc.cast(text, pa.float64()) if numeric else text


def entry_list(counted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in counted if e["counts"]]


def monitor_window(
    scored: pa.Table,
    reference: MonitoringReference,
    rules: MonitoringRules,
    *,
    task: str,
    version: int,
    window: tuple[datetime, datetime],
    refused: pa.Table | None = None,
    top_factors: int = 5,
) -> MonitorResult:
    """`scored`: this version's answered records in the window; `refused`: the window's 422 rows."""
    rows = scored.num_rows
    base = {"task": task, "model_version": version, "window_start": window[0], "window_end": window[1], "rows": rows}
    if rows < rules.min_window:
        return MonitorResult(**base, published=False, reason=f"{rows} scored records, fewer than {rules.min_window}")
    fields = field_drifts(scored, reference, rules)
    probabilities = scored.column("probability").to_numpy(zero_copy_only=False)
    score_current, score_reference, score_edges = _score_bins(probabilities, reference)
    high = probabilities >= reference.high_from
    refused_count, by_field = _refusals(refused)
    return MonitorResult(
        **base,
        published=True,
        reason="ok",
        fields=fields,
        feature_drift=max(f.psi for f in fields),
        drifted_fields=[f.field for f in sorted(fields, key=lambda f: -f.psi) if f.drifted],
        score_psi=psi(score_reference, score_current),
        score_critical=psi_critical(score_edges + 1, reference.rows, rows, rules.drift_alpha),
        score_shares=score_current.tolist(),
        reference_score_shares=score_reference.tolist(),
        high_risk_rate=float(high.mean()),
        expected_high_risk_rate=reference.high_risk_rate(reference.high_from),
        attribution_ndcg=ndcg(reference.attribution, _attribution(scored), top_factors),
        estimated_auc=expected_auc(probabilities),
        reference_estimated_auc=expected_auc(reference.scores),
        expected_positive_rate=float(probabilities.mean()),
        refused_requests=refused_count,
        refused_share=refused_count / (refused_count + _requests(scored)),
        refused_by_field={path: n / (refused_count + _requests(scored)) for path, n in by_field.items()},
        subgroup_high_rates={
            subgroup.name: _group_rates(subgroup_levels(scored, reference.captured_in, subgroup), high)
            for subgroup in reference_subgroups(reference)
        },
        reference_subgroup_high_rates=reference.subgroup_high_rates,
    )


def field_drifts(scored: pa.Table, reference: MonitoringReference, rules: MonitoringRules) -> list[FieldDrift]:
    alpha = rules.drift_alpha / max(len(reference.fields), 1)  # Bonferroni over the fields
    drifts = []
    for name, bins in reference.fields.items():
        counts = value_counts(field_values(scored, reference.captured_in, name, numeric=bins.kind == "numeric"))
        current = shares(bins.binned(counts))
        occupied = int(np.count_nonzero(np.asarray(bins.proportions) > 0))
        critical = psi_critical(occupied, bins.rows, scored.num_rows, alpha)
        value = psi(bins.proportions, current)
        drifts.append(
            FieldDrift(
                field=name,
                kind=bins.kind,
                psi=value,
                critical=critical,
                drifted=value > max(rules.psi_threshold, critical),
                js_distance=js_distance(bins.proportions, current) if bins.kind != "numeric" else None,
                missing_reference=bins.missing,
                missing_current=float(current[-1]),
                unseen_share=bins.unseen(counts),
                reference_shares=bins.proportions,
                current_shares=current.tolist(),
                labels=_labels(bins.kind, bins.edges, bins.categories),
            )
        )
    return drifts


def _labels(kind: str, edges: list[float], categories: list[str]) -> list[str]:
    if kind != "numeric":
        return [*categories, "missing"]
    bounds = ["-inf", *(f"{e:g}" for e in edges), "inf"]
    return [*(f"[{lo}, {hi})" for lo, hi in itertools.pairwise(bounds)), "missing"]


def _score_bins(probabilities: np.ndarray, reference: MonitoringReference) -> tuple[np.ndarray, np.ndarray, int]:
    scores = np.asarray(reference.scores)
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, SCORE_BINS + 1)[1:-1]))
    bins = len(edges) + 1
    ref = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=bins)
    cur = np.bincount(np.searchsorted(edges, probabilities, side="right"), minlength=bins)
    return shares(cur), shares(ref), len(edges)


def _attribution(scored: pa.Table) -> dict[str, float]:
    column = scored.column("factors")
    if column.length() > ATTRIBUTION_SAMPLE:
        column = column.slice(column.length() - ATTRIBUTION_SAMPLE)  # the most recent records
    return mean_attribution(text for text in column.to_pylist() if text)


def subgroup_levels(scored: pa.Table, captured_in: CapturedIn, subgroup: Subgroup) -> pa.ChunkedArray:
    """Each record's level of `subgroup`, binned as the reference binned it (numbers into bands)."""
    import pyarrow as pa

    values = field_values(scored, captured_in, subgroup.column, numeric=False)
    if subgroup.bins is None:
        return values
    return pa.chunked_array([pa.array(subgroup_keys(subgroup, values.to_pylist()), type=pa.string())])


def _group_rates(levels: pa.ChunkedArray, flagged: np.ndarray) -> dict[str, float]:
    """High-risk rate per level (missing: "missing"), grouped in Arrow: no Python object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pc.fill_null(pc.cast(levels, pa.string()), "missing")
    grouped = pa.table({"level": keys, "high": pa.array(flagged)}).group_by("level").aggregate([("high", "mean")])
    return {
        str(k): float(v) for k, v in zip(grouped["level"].to_pylist(), grouped["high_mean"].to_pylist(), strict=True)
    }


def _requests(scored: pa.Table) -> int:
    import pyarrow.compute as pc

    return int(pc.count_distinct(scored.column("request_id")).as_py())


def _refusals(refused: pa.Table | None) -> tuple[int, Counter[str]]:
    if refused is None or refused.num_rows == 0:
        return 0, Counter()
    by_field: Counter[str] = Counter()
    for text in refused.column("refused_paths").to_pylist():
        by_field.update(json.loads(text or "[]"))
    return refused.num_rows, by_field


# --------------------------------------------------------------------------- EMF

# The dimensions of the FeatureDrift series each task's retraining alarm watches (across versions).
DRIFT_ALARM_DIMENSIONS = ("Environment", "Task")


def emf_records(
    result: MonitorResult, *, namespace: str, environment: str, timestamp_ms: int, champion: bool
) -> list[dict[str, Any]]:
    """CloudWatch embedded-metric-format records of a published result (none for an unpublished one).
    Dimensions: task and model_version; the champion's FeatureDrift also under Environment and Task,
    which the task's own drift alarm watches (cdk_app/constructs/retraining_triggers.py): one alarm per
    task, so a task's drift starts only that task's retraining, and a routed challenger's never does."""
    if not result.published:
        return []
    values = {
        "FeatureDrift": result.feature_drift,
        "DriftedFields": len(result.drifted_fields),
        "ScoreDrift": result.score_psi,
        "HighRiskRate": result.high_risk_rate,
        "AttributionNDCG": result.attribution_ndcg,
        "EstimatedAUC": result.estimated_auc,
        "RefusedShare": result.refused_share,
        "MonitoredRecords": result.rows,
        **{f"SubgroupHighRiskGap_{a}": _spread(r) for a, r in result.subgroup_high_rates.items()},
    }
    metrics = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
    dims = {"task": result.task, "model_version": str(result.model_version)}
    by_version = emf_record(namespace, [["task", "model_version"]], dims, metrics, timestamp_ms)
    drift = [emf_record(namespace, [[*DRIFT_ALARM_DIMENSIONS]], {"Environment": environment, "Task": result.task},
                        {"FeatureDrift": metrics["FeatureDrift"]}, timestamp_ms)] if champion else []  # fmt: skip
    top = [
        emf_record(
            namespace,
            [["task", "model_version", "field"]],
            dims | {"field": f.field},
            {"FieldPSI": f.psi},
            timestamp_ms,
        )
        for f in sorted(result.fields, key=lambda f: -f.psi)[:5]
    ]
    return [by_version, *drift, *top]


def _spread(rates: dict[str, float]) -> float | None:
    return max(rates.values()) - min(rates.values()) if len(rates) >= 2 else None


def emf_record(
    namespace: str, dimensions: list[list[str]], values: dict[str, str], metrics: dict[str, float], timestamp_ms: int
) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": dimensions,
                    "Metrics": [{"Name": n, "Unit": "None"} for n in metrics],
                }
            ],
        },
        **values,
        **metrics,
    }
