"""Outcomes: observed readmissions, joined to captured predictions by the keyed record id, and the
realized performance of each model version over a rolling window.

An outcomes file is CSV with `encounter_id` and `readmitted` (the UCI values `<30`, `>30`, `NO`).
Its ids are keyed on the way in, exactly as capture keys them, so the clear ids are never stored.
Rows that cannot be used are reported by row number and reason, never by value; outcomes that
match no captured prediction are counted and reported, not dropped silently.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from clinrisk.capture.keys import IdKeyer
from clinrisk.errors import DataFileError
from clinrisk.monitoring.stats import expected_calibration_error
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.monitoring import SUBGROUP_FIELDS
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, POSITIVE_LABEL, TARGET, TARGET_VALUES

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MAX_LISTED_ROWS = 20


class BadRows(BaseModel):
    reason: str
    count: int
    rows: list[int]  # 1-based data rows, the first MAX_LISTED_ROWS


class IngestReport(BaseModel):
    rows_read: int
    rows_stored: int
    matched: int
    unmatched: int
    bad_rows: list[BadRows]


class RealizedPerformance(BaseModel):
    task: str
    model_version: int
    outcomes: int
    positives: int
    auc: float | None
    brier: float
    ece: float
    observed_to_expected: float | None
    subgroup_auc_gap: dict[str, float | None]
    auc_below_floor: bool | None
    calibration_outside_band: bool | None
    gap_above_limit: bool | None
    breaches: list[str]


def read_outcomes(path: Path) -> tuple[pd.DataFrame, list[BadRows]]:
    """The usable rows (`row`, `encounter_id`, `label`) and the reasons others were left out."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataFileError(f"{path}: not a readable CSV file ({type(error).__name__})") from None
    missing = [c for c in (ENCOUNTER_ID, TARGET) if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {', '.join(missing)}")
    rows = np.arange(1, len(frame) + 1)
    ids = pd.to_numeric(frame[ENCOUNTER_ID].str.strip(), errors="coerce")
    bad_id = ~(ids.notna() & (ids > 0) & (ids == ids.round()))
    target = frame[TARGET].str.strip()
    bad_target = ~target.isin(TARGET_VALUES) & ~bad_id
    bad = [
        BadRows(reason=reason, count=int(mask.sum()), rows=rows[mask.to_numpy()][:MAX_LISTED_ROWS].tolist())
        for reason, mask in (
            (f"{ENCOUNTER_ID} is not a positive whole number", bad_id),
            (f"{TARGET} is not one of {', '.join(TARGET_VALUES)}", bad_target),
        )
        if mask.any()
    ]
    good = ~(bad_id | bad_target)
    usable = pd.DataFrame(
        {
            "row": rows[good.to_numpy()],
            ENCOUNTER_ID: ids[good].astype("int64").to_numpy(),
            "label": (target[good] == POSITIVE_LABEL).astype("int8").to_numpy(),
        }
    )
    return usable, bad


def ingest_outcomes(
    path: Path, *, keyer: IdKeyer, outcomes_root: Path, captured_keys: set[str], task: str, now: datetime
) -> IngestReport:
    """Key and store the usable rows of `path` under `outcomes_root/task=<task>/`; count matches
    against `captured_keys` (the record keys captured in the outcome window)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    usable, bad = read_outcomes(path)
    keys = [keyer.record_key(int(encounter)) for encounter in usable[ENCOUNTER_ID]]
    matched = sum(key in captured_keys for key in keys)
    if keys:
        table = pa.table(
            {"record_key": keys, "label": usable["label"].to_numpy(), "received_at": [now.timestamp()] * len(keys)}
        )
        directory = outcomes_root / f"task={task}"
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".part-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, partial)
        partial.replace(directory / partial.name.lstrip("."))
    rows_read = len(usable) + sum(b.count for b in bad)
    return IngestReport(
        rows_read=rows_read, rows_stored=len(keys), matched=matched, unmatched=len(keys) - matched, bad_rows=bad
    )


def read_outcome_table(outcomes_root: Path, task: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.dataset as ds

    directory = outcomes_root / f"task={task}"
    schema = pa.schema([("record_key", pa.string()), ("label", pa.int8()), ("received_at", pa.float64())])
    if not directory.is_dir():
        return schema.empty_table()
    return ds.dataset(directory, schema=schema, format="parquet", ignore_prefixes=[".", "_"]).to_table()


def realized_performance(captures: pa.Table, outcomes: pa.Table, settings: Settings) -> list[RealizedPerformance]:
    """Per model version: captures (answered, scored) joined to outcomes by record key; the last
    capture of a record and its last outcome count."""
    import pyarrow.compute as pc

    answered = captures.filter(
        pc.and_(pc.equal(captures.column("kind"), "scored"), pc.equal(captures.column("role"), "answer"))
    )
    from clinrisk.monitoring.monitor import COLUMN_OF

    columns = [
        "record_key",
        "model_version",
        "probability",
        "captured_at",
        *(COLUMN_OF[f] for f in SUBGROUP_FIELDS.values()),
    ]
    left = answered.select(columns).to_pandas().sort_values("captured_at").drop_duplicates("record_key", keep="last")
    right = outcomes.to_pandas().sort_values("received_at").drop_duplicates("record_key", keep="last")
    joined = left.merge(right, on="record_key", how="inner")
    return [_realized(group, int(version), settings) for version, group in joined.groupby("model_version", sort=True)]


def _realized(frame: pd.DataFrame, version: int, settings: Settings) -> RealizedPerformance:
    from clinrisk.evaluation.metrics import max_subgroup_auc_gap, roc_auc, subgroup_report
    from clinrisk.monitoring.monitor import COLUMN_OF

    gate, rules = settings.gate, settings.monitoring
    y = frame["label"].to_numpy(dtype=int)
    p = frame["probability"].to_numpy(dtype=float)
    both = 0 < y.sum() < y.size
    auc = roc_auc(y, p) if both else None
    expected = float(p.sum())
    ratio = float(y.sum()) / expected if expected > 0 else None
    gaps: dict[str, float | None] = {}
    if both:
        attributes = {
            a: frame[COLUMN_OF[f]].astype(object).fillna("missing").astype(str).to_numpy()
            for a, f in SUBGROUP_FIELDS.items()
        }
        subgroups = subgroup_report(
            y, p, attributes, threshold=settings.operating_threshold, min_size=gate.subgroup_min_size,
            min_positives=gate.subgroup_min_positives,
        )  # fmt: skip
        gaps = max_subgroup_auc_gap(subgroups)
    low, high = rules.calibration_band
    below = None if auc is None else auc < gate.auc_floor
    outside = None if ratio is None else not low <= ratio <= high
    wide = {a: g for a, g in gaps.items() if g is not None and g > gate.gap_limit(a)}
    breaches = [
        *([f"realized AUC {auc:.3f} is below the gate's floor {gate.auc_floor:.3f}"] if below else []),
        *([f"observed/expected {ratio:.2f} is outside [{low:.2f}, {high:.2f}]"] if outside else []),
        *(f"{a} AUC gap {g:.3f} is above the gate's {gate.gap_limit(a):.3f}" for a, g in wide.items()),
    ]
    return RealizedPerformance(
        task=rules.task,
        model_version=version,
        outcomes=int(y.size),
        positives=int(y.sum()),
        auc=auc,
        brier=float(np.mean((p - y) ** 2)),
        ece=expected_calibration_error(y, p),
        observed_to_expected=ratio,
        subgroup_auc_gap=gaps,
        auc_below_floor=below,
        calibration_outside_band=outside,
        gap_above_limit=bool(wide) if any(g is not None for g in gaps.values()) else None,
        breaches=breaches,
    )


def realized_emf(performance: RealizedPerformance, *, namespace: str, timestamp_ms: int) -> dict[str, object]:
    from clinrisk.monitoring.monitor import emf_record

    values = {
        "RealizedAUC": performance.auc,
        "RealizedBrier": performance.brier,
        "RealizedECE": performance.ece,
        "ObservedToExpected": performance.observed_to_expected,
        "OutcomesJoined": performance.outcomes,
        **{f"SubgroupAUCGap_{a}": g for a, g in performance.subgroup_auc_gap.items()},
        # One metric for the fairness alarm: each attribute's gap against the gate's limit for it.
        "SubgroupAUCGapAboveLimit": None if performance.gap_above_limit is None else float(performance.gap_above_limit),
    }
    dims = {"task": performance.task, "model_version": str(performance.model_version)}
    metrics = {k: float(v) for k, v in values.items() if v is not None}
    return emf_record(namespace, [["task", "model_version"]], dims, metrics, timestamp_ms)
