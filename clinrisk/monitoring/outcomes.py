"""Outcomes: observed outcomes of a task, joined to captured predictions by the keyed record id, and
the realized performance of each model version over a rolling window.

Readmission's outcomes file is CSV with `encounter_id` and `readmitted` (the UCI values `<30`, `>30`,
`NO`). Any other task's is CSV with its task file's record id and target columns, the target turned
into 0/1 by the task's own rule (`clinrisk.data.task_tables.read_task_outcomes`).
Its ids are keyed on the way in, exactly as capture keys them, so the clear ids are never stored.
Rows that cannot be used are reported by row number and reason, never by value; outcomes that
match no captured prediction are counted and reported, not dropped silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from clinrisk.capture.keys import IdKeyer
from clinrisk.errors import DataFileError
from clinrisk.monitoring.reference import CapturedIn, readmission_subgroups
from clinrisk.monitoring.stats import expected_calibration_error
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, POSITIVE_LABEL, TARGET, TARGET_VALUES
from clinrisk.taskspec.spec import Subgroup, TaskSpec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from clinrisk.data.task_port import Task

MAX_LISTED_ROWS = 20


@dataclass(frozen=True)
class OutcomeTask:
    """How one task's outcome files are read, and its captures' subgroups found.
    `spec` None: readmission's outcome file and its own capture columns."""

    spec: TaskSpec | None = None
    others: Sequence[TaskSpec] = ()  # the other tasks, to name the one a wrong file belongs to
    subgroups: list[Subgroup] = field(default_factory=readmission_subgroups)
    captured_in: CapturedIn = "columns"


def outcome_task(task: Task) -> OutcomeTask:
    """Readmission's outcome file, or (for a task bound to its file alone) the task file's columns."""
    from clinrisk.data.generic_task import GenericTask
    from clinrisk.taskspec.catalogue import discover_tasks

    if not isinstance(task, GenericTask):
        return OutcomeTask()
    spec = task.source.spec
    others = [loaded.spec for loaded in discover_tasks().values()]
    return OutcomeTask(spec=spec, others=others, subgroups=list(spec.subgroups), captured_in="inputs")


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


def read_outcomes(path: Path, task: OutcomeTask | None = None) -> tuple[pd.DataFrame, list[BadRows]]:
    """The usable rows (`row`, `record_id` as text, `label`) and the reasons others were left out."""
    import pandas as pd

    if task is not None and task.spec is not None:
        return _task_outcomes(path, task)

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
            "record_id": ids[good].astype("int64").astype(str).to_numpy(),
            "label": (target[good] == POSITIVE_LABEL).astype("int8").to_numpy(),
        }
    )
    return usable, bad


def _task_outcomes(path: Path, task: OutcomeTask) -> tuple[pd.DataFrame, list[BadRows]]:
    import pandas as pd

    from clinrisk.data.task_tables import read_task_outcomes

    assert task.spec is not None
    read = read_task_outcomes(task.spec, path, others=task.others)
    usable = pd.DataFrame({"row": read.rows, "record_id": read.ids, "label": read.labels})
    reason = f"no {task.spec.record_id} or no {task.spec.target.column} (outcome not known)"
    incomplete = read.incomplete
    bad = [BadRows(reason=reason, count=incomplete.size, rows=incomplete[:MAX_LISTED_ROWS].tolist())]
    return usable, bad if incomplete.size else []


def ingest_outcomes(
    path: Path,
    *,
    keyer: IdKeyer,
    outcomes_root: Path,
    captured_keys: set[str],
    task: str,
    now: datetime,
    reader: OutcomeTask | None = None,
) -> IngestReport:
    """Key and store the usable rows of `path` under `outcomes_root/task=<task>/`; count matches
    against `captured_keys` (the record keys captured in the outcome window). `reader`: how the
    task's outcome file is read (readmission's when None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    usable, bad = read_outcomes(path, reader)
    keys = [keyer.record_key(record) for record in usable["record_id"]]
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


def realized_performance(
    captures: pa.Table, outcomes: pa.Table, settings: Settings, task: OutcomeTask | None = None
) -> list[RealizedPerformance]:
    """Per model version: captures (answered, scored) joined to outcomes by record key; the last
    capture of a record and its last outcome count. `task`: where the captures hold its subgroups
    (readmission's columns when None); `settings`: the task's own (its gate's limits)."""
    import pyarrow.compute as pc

    from clinrisk.monitoring.monitor import subgroup_levels

    task = task or OutcomeTask()
    answered = captures.filter(
        pc.and_(pc.equal(captures.column("kind"), "scored"), pc.equal(captures.column("role"), "answer"))
    )
    left = answered.select(["record_key", "model_version", "probability", "captured_at"])
    for subgroup in task.subgroups:
        left = left.append_column(_SUBGROUP + subgroup.name, subgroup_levels(answered, task.captured_in, subgroup))
    left = left.to_pandas().sort_values("captured_at").drop_duplicates("record_key", keep="last")
    right = outcomes.to_pandas().sort_values("received_at").drop_duplicates("record_key", keep="last")
    joined = left.merge(right, on="record_key", how="inner")
    names = [subgroup.name for subgroup in task.subgroups]
    return [
        _realized(group, int(version), settings, names) for version, group in joined.groupby("model_version", sort=True)
    ]


_SUBGROUP = "subgroup:"


def _realized(frame: pd.DataFrame, version: int, settings: Settings, attributes: list[str]) -> RealizedPerformance:
    from clinrisk.evaluation.metrics import max_subgroup_auc_gap, roc_auc, subgroup_report

    gate, rules = settings.gate, settings.monitoring
    y = frame["label"].to_numpy(dtype=int)
    p = frame["probability"].to_numpy(dtype=float)
    both = 0 < y.sum() < y.size
    auc = roc_auc(y, p) if both else None
    expected = float(p.sum())
    ratio = float(y.sum()) / expected if expected > 0 else None
    gaps: dict[str, float | None] = {}
    if both:
        levels = {a: frame[_SUBGROUP + a].astype(object).fillna("missing").astype(str).to_numpy() for a in attributes}
        subgroups = subgroup_report(
            y, p, levels, threshold=settings.operating_threshold, min_size=gate.subgroup_min_size,
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
