"""The API contract of a task, generated from its task file: one strict pydantic model per task.

Each declared model input becomes a field named as the column, typed by its declaration:
- numeric: a number (an integer where the file says `integer: true`) within the plausible range,
  the unit and range in its description;
- categorical: one of the declared codes (`Literal`, integers when every code is a whole number),
  each code's label in the description and in `x-code-labels`;
- boolean: `true` or `false`.
Every input may be `null` or absent: not recorded (the model learned where missing values go, as
in training, where the task's missing markers and missing values became missing). The record id
is required and echoed in the answer. Types are strict as in readmission's contract: no `"9"` for
9, no `true` for 1; an integer field takes 9 and 9.0 (both JSON Schema integers); unknown field
names are refused. Readmission keeps its hand-built contract (`clinrisk.serving.prediction`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model
from pydantic import field_validator as _field_validator
from pydantic_core import PydanticCustomError

from clinrisk.taskspec.spec import BooleanColumn, CategoricalColumn, NumericColumn, TaskSpec

MAX_RECORDS = 1000
_ID_LENGTH = 128


def model_prefix(task: str) -> str:
    """`heart-disease` -> `HeartDisease`: the prefix of the task's schema names in the OpenAPI document."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", task) if part)


def _integer(value: Any) -> Any:
    """JSON Schema's integer: 9 and 9.0, never true (strict mode alone refuses 9.0, Literal codes take true)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def integer_codes(column: CategoricalColumn) -> bool:
    return all(re.fullmatch(r"-?\d+", code) for code in column.codes)


def _numeric(column: NumericColumn) -> tuple[Any, Any]:
    what = column.description or column.name
    unit = "" if column.unit == "1" else f" ({column.unit})"
    description = f"{what}{unit}. Plausible range {column.range.text()}. null or absent: not recorded."
    kind: Any = StrictInt if column.integer else StrictFloat
    return kind | None, Field(None, ge=column.range.min, le=column.range.max, description=description)


def _categorical(column: CategoricalColumn) -> tuple[Any, Any]:
    what = column.description or column.name
    codes: list[Any] = [int(code) for code in column.codes] if integer_codes(column) else list(column.codes)
    labels = "; ".join(f"{code} = {label}" for code, label in column.codes.items())
    description = f"{what}. Codes: {labels}. null or absent: not recorded."
    extra: dict[str, Any] = {"x-code-labels": dict(column.codes)}
    return Literal[tuple(codes)] | None, Field(None, description=description, json_schema_extra=extra)


def _boolean(column: BooleanColumn) -> tuple[Any, Any]:
    what = column.description or column.name
    return StrictBool | None, Field(None, description=f"{what}: true or false. null or absent: not recorded.")


def _id_field(spec: TaskSpec) -> tuple[Any, Any]:
    column = spec.column(spec.record_id)
    description = f"The record's id ({spec.record_id}); echoed in its prediction, never used by the model."
    if isinstance(column, NumericColumn) and column.integer:
        return StrictInt, Field(ge=0, le=2**53 - 1, description=description)
    return StrictStr, Field(min_length=1, max_length=_ID_LENGTH, description=description)


def record_model(spec: TaskSpec) -> type[BaseModel]:
    """The pydantic model of one record of `spec`'s task, as the API takes it."""
    fields: dict[str, Any] = {spec.record_id: _id_field(spec)}
    integers: list[str] = []
    for column in spec.feature_columns:
        if isinstance(column, NumericColumn):
            fields[column.name] = _numeric(column)
            integers += [column.name] if column.integer else []
        elif isinstance(column, CategoricalColumn):
            fields[column.name] = _categorical(column)
            integers += [column.name] if integer_codes(column) else []
        else:
            fields[column.name] = _boolean(column)
    id_column = spec.column(spec.record_id)
    if isinstance(id_column, NumericColumn) and id_column.integer:
        integers.append(spec.record_id)
    validators = {"integers": _field_validator(*integers, mode="before")(_integer)} if integers else {}
    return create_model(
        f"{model_prefix(spec.name)}Record",
        __config__=ConfigDict(extra="forbid", strict=True, title=f"{model_prefix(spec.name)}Record"),
        __doc__=f"One record to score for task {spec.name}: {spec.description}",
        __validators__=validators,
        **fields,
    )


class TaskRequest(BaseModel):
    """The base of every task's request body: `records`, 1 to 1,000 of them."""

    model_config = ConfigDict(extra="forbid")

    records: list[Any]

    def __repr__(self) -> str:
        # Never patient values in a debug message (Powertools formats the parsed body).
        return f"{type(self).__name__}(records=<{len(self.records)} records>)"


def request_model(spec: TaskSpec) -> type[TaskRequest]:
    """The request body of `POST /v1/tasks/{task}/predict` for `spec`'s task."""
    record = record_model(spec)
    return create_model(
        f"{model_prefix(spec.name)}PredictRequest",
        __base__=TaskRequest,
        __doc__=f"Records to score for task {spec.name}.",
        records=(list[record], Field(min_length=1, max_length=MAX_RECORDS)),  # type: ignore[valid-type]
    )


class TaskExplainRequest(BaseModel):
    """The base of every task's explain body: one `record`."""

    model_config = ConfigDict(extra="forbid")

    record: Any

    def __repr__(self) -> str:
        return f"{type(self).__name__}(record=<1 record>)"


def explain_request_model(spec: TaskSpec) -> type[TaskExplainRequest]:
    """The request body of `POST /v1/tasks/{task}/explain` for `spec`'s task."""
    return create_model(
        f"{model_prefix(spec.name)}ExplainRequest",
        __base__=TaskExplainRequest,
        __doc__=f"One record to explain for task {spec.name}.",
        record=(record_model(spec), ...),
    )
