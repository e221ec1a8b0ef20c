"""The local capture sink: Parquet files in the layout Firehose writes in the cloud,
`captures/task=<task>/date=<YYYY-MM-DD>/model_version=<v>/part-<uuid>.parquet`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from clinrisk.capture.records import CAPTURE_SCHEMA, INPUTS_TYPE, PARTITION_COLUMNS

_ARROW_TYPES = {"string": "string", "int": "int64", "double": "float64"}


def arrow_schema(*, with_partitions: bool = False) -> Any:
    import pyarrow as pa

    def arrow_type(kind: str) -> Any:
        return pa.map_(pa.string(), pa.string()) if kind == INPUTS_TYPE else pa.type_for_alias(_ARROW_TYPES[kind])

    return pa.schema(
        [
            (name, arrow_type(kind))
            for name, kind in CAPTURE_SCHEMA.items()
            if with_partitions or name not in PARTITION_COLUMNS
        ]
    )


class ParquetCaptureSink:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[(row["task"], row["date"], int(row["model_version"]))].append(row)
        schema = arrow_schema()
        for (task, date, version), members in groups.items():
            directory = self.root / f"task={task}" / f"date={date}" / f"model_version={version}"
            directory.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(members, schema=schema)
            name = f"part-{uuid.uuid4().hex}.parquet"
            partial = directory / f".{name}.partial"  # readers skip dot files; the rename is atomic
            pq.write_table(table, partial)
            partial.replace(directory / name)


def scored_table(records: list[dict[str, Any]], priors: list[int], scored: list[Any], *, common: dict[str, Any]) -> Any:
    """Capture rows of scored encounters as one Arrow table (for benchmarks and tests), with
    made-up keys `k<i>`/`p<i>` in place of the keyed ids."""
    import pyarrow as pa

    from clinrisk.capture.records import ScoredRecord, scored_row

    rows = [
        scored_row(
            ScoredRecord(r, prior, s.probability, s.band, [(f.factor, f.contribution) for f in s.factors]),
            keyed=(f"k{i}", f"p{i}"),
            common=common,
        )
        for i, (r, prior, s) in enumerate(zip(records, priors, scored, strict=True))
    ]
    return pa.Table.from_pylist(rows, schema=arrow_schema(with_partitions=True))
