"""Reading a window of captures, and the monitor run over every version that answered in it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrisk.capture.records import FIELD_COLUMNS
from clinrisk.monitoring.monitor import MonitorResult, emf_records, monitor_window
from clinrisk.monitoring.reference import REFERENCE_FILE, MonitoringReference
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import ModelFiles, pointer_key, read_pointer
from clinrisk.serving.model_holder import fetch_model_files
from clinrisk.settings import DEFAULT_TASK, Settings

if TYPE_CHECKING:
    import pyarrow as pa

NAMESPACE = "clinrisk"


def read_window(root: Path, *, task: str, start: datetime, end: datetime) -> pa.Table:
    """Every captured row of `task` with start <= captured_at < end (Hive partitions pruned by date).
    Input fields held as text come dictionary-encoded: a million rows of a few hundred distinct
    values then take 4 bytes a row, not a string each."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from clinrisk.capture.local_sink import arrow_schema

    plain = arrow_schema(with_partitions=True)
    encoded = [name for name in plain.names if name in FIELD_COLUMNS and plain.field(name).type == pa.string()]
    schema = pa.schema(
        [pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in encoded else f for f in plain]
    )
    if not (root / f"task={task}").is_dir():
        return schema.empty_table()
    parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=encoded))
    dataset = ds.dataset(
        root, schema=schema, format=parquet, partitioning="hive", exclude_invalid_files=False,
        ignore_prefixes=[".", "_"],
    )  # fmt: skip
    days = [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((end - start).days + 2)]
    condition = (
        (ds.field("task") == task)
        & ds.field("date").isin(days)
        & (ds.field("captured_at") >= start.timestamp())
        & (ds.field("captured_at") < end.timestamp())
    )
    return pa.Table.from_batches(dataset.to_batches(filter=condition), schema=schema)


def monitored_versions(store: ObjectStore, task: str = DEFAULT_TASK) -> list[ModelFiles]:
    """`task`'s champion, and its challenger when one is routed: each against its own reference."""
    pointer = read_pointer(store, pointer_key(task))
    if pointer is None:
        return []
    files = [ModelFiles(version=pointer.version, artifact_prefix=pointer.artifact_prefix, checksum=pointer.checksum)]
    if pointer.challenger is not None:
        files.append(pointer.challenger)
    return files


def load_reference(store: ObjectStore, files: ModelFiles) -> MonitoringReference | None:
    with tempfile.TemporaryDirectory(prefix="clinrisk-reference-") as cache:
        directory = fetch_model_files(store, files, Path(cache))
        if not (directory / REFERENCE_FILE).is_file():
            return None  # a model trained before capture existed
        return MonitoringReference.load(directory)


def run_monitor(
    captures: pa.Table,
    references: dict[int, MonitoringReference | None],
    settings: Settings,
    *,
    window: tuple[datetime, datetime],
) -> list[MonitorResult]:
    """Monitor each version's answered records in `captures` against its reference."""
    import pyarrow.compute as pc

    rules = settings.monitoring
    refused = captures.filter(pc.equal(captures.column("kind"), "refused"))
    answered = _rows_where(
        captures, pc.and_(pc.equal(captures.column("kind"), "scored"), pc.equal(captures.column("role"), "answer"))
    )
    results = []
    for version, reference in references.items():
        rows = _rows_where(answered, pc.equal(answered.column("model_version"), version))
        base = {"task": rules.task, "model_version": version, "window_start": window[0], "window_end": window[1]}
        if reference is None:
            results.append(MonitorResult(**base, rows=rows.num_rows, published=False, reason="no monitoring reference"))
            continue
        results.append(
            monitor_window(
                rows,
                reference,
                rules,
                task=rules.task,
                version=version,
                window=window,
                refused=refused,
                top_factors=settings.serving.top_factors,
            )
        )
    return results


def _rows_where(table: pa.Table, mask: Any) -> pa.Table:
    """`table.filter(mask)`, without copying every column when every row passes (the usual window)."""
    import pyarrow.compute as pc

    return table if pc.all(mask).as_py() is not False and table.num_rows else table.filter(mask)


def window_ending(now: datetime, hours: float) -> tuple[datetime, datetime]:
    return now - timedelta(hours=hours), now


def publish(
    results: list[MonitorResult],
    settings: Settings,
    write: Callable[[str], Any],
    *,
    now: datetime,
    champion: int | None,
) -> int:
    """Write the EMF records of the published results, one JSON line each; returns how many.
    `champion`: the serving pointer's version, the only one whose drift may start a retraining."""
    lines = [
        json.dumps(record)
        for result in results
        for record in emf_records(
            result,
            namespace=NAMESPACE,
            environment=settings.monitoring.environment,
            timestamp_ms=int(now.timestamp() * 1000),
            champion=result.model_version == champion,
        )
    ]
    for line in lines:
        write(line)
    return len(lines)


def local_metrics_writer(settings: Settings) -> Callable[[str], None]:
    """The local stand-in for CloudWatch: the same EMF lines, appended to a log."""
    path = settings.monitor_dir / "metrics.jsonl"

    def write(line: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    return write


def utc_now() -> datetime:
    return datetime.now(UTC)
