"""Batch scoring of a task other than readmission (`clinrisk score --task T`): a data file of the
task in, one row of scores per valid record out, from the task's champion.

The file is read as the task reads its data files (`clinrisk.data.task_tables.read_task_files`: its
delimiter, header or declared order, added columns; the target may be blank). Each row then goes
the prediction API's way: its cells become the JSON values a client would send (the task's missing
markers and missing values as null, codes as the declared codes) and are checked against the same
generated contract (`clinrisk.serving.task_contract`), then scored by the same `TaskServingModel`.
A row the contract refuses is left out and reported by row number, column and reason, never value.
The whole file is read at once (task files are small tables; readmission's path streams in chunks).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from clinrisk.batch.cloud import factor_text
from clinrisk.batch.local import BatchRejectedError, BatchReport
from clinrisk.capture.capturer import Capturer
from clinrisk.data.tables import FileFormat, file_format
from clinrisk.data.task_tables import read_task_files
from clinrisk.data.validation import MAX_EXAMPLE_ROWS, Problem, ProblemCode
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import ModelFiles, pointer_key
from clinrisk.serving.capture import capture_task_scored
from clinrisk.serving.model_holder import NoChampionError, PointerFollower
from clinrisk.serving.scoring import Bands
from clinrisk.serving.task_contract import integer_codes, record_model
from clinrisk.serving.task_scoring import TaskServingModel
from clinrisk.taskspec.spec import BooleanColumn, CategoricalColumn, NumericColumn, TaskSpec, normalise_code

# pydantic's error type -> the validation problem it is.
_CODES: dict[str, ProblemCode] = {
    "literal_error": ProblemCode.UNKNOWN_CODE,
    "bool_type": ProblemCode.NOT_BOOLEAN,
    "greater_than_equal": ProblemCode.OUT_OF_RANGE,
    "less_than_equal": ProblemCode.OUT_OF_RANGE,
    "missing": ProblemCode.MISSING_VALUE,
    "string_too_short": ProblemCode.MISSING_VALUE,
}


def load_task_champion(store: ObjectStore, spec: TaskSpec) -> TaskServingModel:
    """The task's champion, named by its own serving pointer, loaded as the prediction API loads it."""

    def load(directory: Path, name: str, files: ModelFiles) -> TaskServingModel:
        return TaskServingModel.load(directory, spec=spec, name=name, version=files.version, checksum=files.checksum)

    with tempfile.TemporaryDirectory(prefix="clinrisk-models-") as cache:
        follower = PointerFollower(
            store, check_seconds=0.0, load=load, key=pointer_key(spec.name), cache_dir=Path(cache)
        )
        try:
            return follower.current().champion
        except NoChampionError as error:
            if follower.status.error is not None:
                raise
            raise NoChampionError(
                f"{error} for task {spec.name!r}; `clinrisk pipeline run --task {spec.name}` trains and promotes one"
            ) from None


def json_record(spec: TaskSpec, row: dict[str, str]) -> dict[str, Any]:
    """A data file's row as the API's JSON record: what `read_task_files` read, typed as a client sends it."""
    markers = set(spec.missing_markers)
    record: dict[str, Any] = {spec.record_id: _json_id(spec, row[spec.record_id])}
    for column in spec.feature_columns:
        text = row[column.name].strip()
        record[column.name] = None if text in markers else _json_value(column, text)
    return record


def _json_id(spec: TaskSpec, text: str) -> Any:
    column = spec.column(spec.record_id)
    if isinstance(column, NumericColumn) and column.integer:
        return _number(text, integer=True)
    return text.strip()


def _json_value(column: NumericColumn | CategoricalColumn | BooleanColumn, text: str) -> Any:
    if isinstance(column, NumericColumn):
        number = _number(text, integer=column.integer)
        return None if isinstance(number, int | float) and number in column.missing_values else number
    code = normalise_code(text)
    if isinstance(column, CategoricalColumn):
        return int(code) if integer_codes(column) and code.lstrip("-").isdigit() else code
    lowered = code.lower()
    return True if lowered in column.true_values else False if lowered in column.false_values else text


def _number(text: str, *, integer: bool) -> Any:
    """A number as JSON holds it; text that is not a number stays text, which the contract refuses."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if integer and number.is_integer() else number


def score_task_file(
    spec: TaskSpec,
    source: Path,
    destination: Path,
    *,
    model: TaskServingModel,
    bands: Bands,
    top_k: int,
    strict: bool,
    capture: Capturer | None = None,
) -> BatchReport:
    """Score every valid row of `source` into `destination` (CSV or Parquet, by suffix), in input order.
    With `strict`, any invalid row raises `BatchRejectedError` and nothing is written."""
    started = time.perf_counter()
    fmt = file_format(destination)
    raw = read_task_files(spec, [source])
    contract = record_model(spec)
    valid: list[dict[str, Any]] = []
    refused: dict[tuple[str, ProblemCode], list[int]] = defaultdict(list)
    rows: list[dict[str, str]] = raw.to_dict("records")  # type: ignore[assignment]
    for number, row in enumerate(rows, start=1):
        try:
            valid.append(contract.model_validate(json_record(spec, row)).model_dump())
        except ValidationError as error:
            for problem in error.errors():
                refused[(str(problem["loc"][0]), _CODES.get(problem["type"], ProblemCode.NOT_A_NUMBER))].append(number)
    problems = [
        Problem(column=column, code=code, count=len(rows), example_rows=rows[:MAX_EXAMPLE_ROWS],
                message=f"{len(rows)} rows: {code.value.replace('_', ' ')} in {column}")
        for (column, code), rows in refused.items()
    ]  # fmt: skip
    invalid = len({row for rows in refused.values() for row in rows})
    report = BatchReport(
        rows_read=len(raw), rows_scored=len(valid), rows_invalid=invalid, problems=problems,
        seconds=0.0, model_version=model.version,
    )  # fmt: skip
    if strict and invalid:
        raise BatchRejectedError(report.model_copy(update={"rows_scored": 0}))
    scored = model.score(valid, bands=bands, top_k=top_k) if valid else []
    frame = pd.DataFrame(
        {
            spec.record_id: [record[spec.record_id] for record in valid],
            "probability": [s.probability for s in scored],
            "band": [s.band for s in scored],
            "model_version": [model.version] * len(scored),
            **{f"factor_{i + 1}": [factor_text(s.factors[i]) for s in scored] for i in range(top_k)},
        }
    )
    _write(frame, destination, fmt)
    if capture is not None and scored:
        run_id = f"batch-{uuid.uuid4().hex[:12]}"
        capture_task_scored(
            capture,
            task=spec.name,
            spec=spec,
            request_id=run_id,
            version=model.version,
            records=valid,
            scored=scored,
            source="batch",
        )
    return report.model_copy(update={"seconds": time.perf_counter() - started})


def _write(frame: pd.DataFrame, destination: Path, fmt: FileFormat) -> None:
    """Written beside `destination` and renamed onto it, so a failed run leaves nothing behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        if fmt is FileFormat.PARQUET:
            frame.to_parquet(partial, index=False)
        else:
            frame.to_csv(partial, index=False, compression="gzip" if destination.name.lower().endswith(".gz") else None)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
