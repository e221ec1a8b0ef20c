"""The task file: a YAML file that declares one clinical risk task, and its loader.

`load_task` reports every problem of a file at once, one line each, with its path in the file
(`columns[4] (chol).unit: field required`). Field problems come from pydantic; the checks that
relate fields to each other (declared columns, known plugins, duplicate names) run once every
field is valid, and are again all reported together.

Codes of categorical columns are kept as text: `1`, `1.0` and `"1"` in a data file all mean code
"1" (`normalise_code`), because sites write the same code differently (Cleveland writes `63.0`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from clinrisk.errors import ClinriskError
from clinrisk.taskspec.plugins import KNOWN_PLUGINS

_NAME = r"^[a-z][a-z0-9-]*$"
TASK_NAME = re.compile(_NAME)
_COLUMN_TYPES = ("numeric", "categorical", "boolean", "identifier")
_COMPARISON = re.compile(r"^\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


class TaskFileError(ClinriskError):
    """A task file cannot be used; `problems` holds one line per problem, each with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems) if len(problems) == 1 else _listing(source, problems))
        self.source = source
        self.problems = problems

    def __reduce__(self) -> tuple[type[TaskFileError], tuple[str, list[str]]]:
        return (type(self), (self.source, self.problems))


def _listing(source: str, problems: list[str]) -> str:
    return f"{source}: {len(problems)} problems\n" + "\n".join(f"  {problem}" for problem in problems)


def normalise_code(value: object) -> str:
    """The text form of a code: whole numbers without a decimal part (`3.0` -> `3`), text stripped."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        number = float(value)
        return str(int(number)) if math.isfinite(number) and number.is_integer() else str(number)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def _codes(values: Any) -> Any:
    return [normalise_code(value) for value in values] if isinstance(values, list) else values


CodeList = Annotated[list[str], BeforeValidator(_codes)]  # `[1, 2.0, "3"]` -> `["1", "2", "3"]`


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """The plausible values of a numeric column; either end may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def text(self) -> str:
        return f"{_number_text(self.min) if self.min is not None else '-inf'} to " + (
            _number_text(self.max) if self.max is not None else "+inf"
        )


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _ColumnBase(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    feature: bool = Field(True, description="False: declared and validated, but never a model input.")


class NumericColumn(_ColumnBase):
    type: Literal["numeric"]
    unit: str = Field(description="Unit of measure; '1' for a count or a dimensionless value.")
    range: Range = Field(description="Plausible values; values outside are data errors.")
    missing_values: list[float] = Field(
        default_factory=list, description="Values that mean 'not recorded' (such as 0 for cholesterol)."
    )
    integer: bool = False


class CategoricalColumn(_ColumnBase):
    type: Literal["categorical"]
    codes: dict[str, str] = Field(min_length=1, description="Allowed code -> its label.")

    @field_validator("codes", mode="before")
    @classmethod
    def _codes_as_text(cls, codes: Any) -> Any:
        if isinstance(codes, dict):
            return {normalise_code(code): str(label) for code, label in codes.items()}
        return codes


class BooleanColumn(_ColumnBase):
    type: Literal["boolean"]
    true_values: list[str] = Field(default_factory=lambda: ["1", "true", "yes"], min_length=1)
    false_values: list[str] = Field(default_factory=lambda: ["0", "false", "no"], min_length=1)

    @field_validator("true_values", "false_values", mode="before")
    @classmethod
    def _as_text(cls, values: Any) -> Any:
        if isinstance(values, list):
            return [normalise_code(value).lower() for value in values]
        return values


class IdentifierColumn(_ColumnBase):
    """An id (record, patient): text, checked for presence and uniqueness, never a model input."""

    type: Literal["identifier"]
    feature: Literal[False] = False


AnyColumn = NumericColumn | CategoricalColumn | BooleanColumn | IdentifierColumn
Column = Annotated[AnyColumn, Field(discriminator="type")]


class Target(_Strict):
    """The outcome: a column and either its positive values or a comparison (`> 0`)."""

    column: str
    positive: CodeList | None = None
    positive_if: str | None = Field(None, description="A comparison with a number: '> 0', '>= 2', '< 1'.")

    @field_validator("positive_if")
    @classmethod
    def _comparison(cls, text: str | None) -> str | None:
        if text is not None and not _COMPARISON.match(text):
            raise ValueError("must be a comparison with a number, such as '> 0'")
        return text

    @model_validator(mode="after")
    def _one_rule(self) -> Target:
        if (self.positive is None) == (self.positive_if is None):
            raise ValueError("give exactly one of positive (values) or positive_if (a comparison such as '> 0')")
        return self

    def comparison(self) -> tuple[str, float] | None:
        match = _COMPARISON.match(self.positive_if or "")
        return (match.group(1), float(match.group(2))) if match else None


class FileLabel(_Strict):
    """A column the loader adds, naming the file each row came from (the site, when sites are pooled)."""

    column: str
    labels: dict[str, str] = Field(min_length=1, description="File name -> label.")


class Source(_Strict):
    """How data files of this task are read."""

    header: bool = Field(True, description="False: the file has no header; columns come in declared order.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    row_id: str | None = Field(
        None, description="A column the loader adds: the row's number in its file (prefixed with its file label)."
    )
    file_label: FileLabel | None = None
    ignore: list[str] = Field(
        default_factory=list, description="Columns of a file with a header that the task does not use."
    )

    def added_columns(self) -> list[str]:
        return [name for name in (self.row_id, self.file_label.column if self.file_label else None) if name]


class Exclusion(_Strict):
    """Rows that never train or score: those whose column holds one of `values`."""

    column: str
    values: CodeList = Field(min_length=1)
    reason: str = Field(min_length=1)


class Subgroup(_Strict):
    """A fairness attribute: a column, optionally cut into bins (`[40, 50, 60]` gives <40, 40-50, ...)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    column: str
    bins: list[float] | None = Field(None, min_length=1)

    @field_validator("bins")
    @classmethod
    def _increasing(cls, bins: list[float] | None) -> list[float] | None:
        if bins is not None and any(b >= a for a, b in zip(bins[1:], bins, strict=False)):
            raise ValueError("bins must increase")
        return bins


class MonitoringOverrides(_Strict):
    """The task's own alarm levels where the deployment's (`MonitoringRules`) do not fit its model:
    a task whose outcome is common has a high-risk share far above readmission's."""

    high_risk_rate_alarm: float | None = Field(
        None, gt=0, lt=1, description="The high-risk share of a monitor window that alarms."
    )


class GateOverrides(_Strict):
    """Per-task changes to the promotion gate (the fields of `clinrisk.settings.GateRules`)."""

    auc_floor: float | None = Field(None, ge=0.5, le=1.0)
    max_auc_regression: float | None = Field(None, ge=0.0, le=1.0)
    max_subgroup_auc_gap: float | None = Field(None, ge=0.0, le=1.0)
    subgroup_gap_limits: dict[str, float] | None = None
    subgroup_min_size: int | None = Field(None, ge=1)


class TrainingOverrides(_Strict):
    """Per-task XGBoost settings (the fields of `clinrisk.model.training.Hyperparameters`)."""

    eta: float | None = Field(None, gt=0, le=1)
    max_depth: int | None = Field(None, ge=1, le=16)
    min_child_weight: float | None = Field(None, ge=0)
    subsample: float | None = Field(None, gt=0, le=1)
    colsample_bytree: float | None = Field(None, gt=0, le=1)
    reg_lambda: float | None = Field(None, ge=0)
    num_round: int | None = Field(None, ge=1)
    early_stopping_rounds: int | None = Field(None, ge=1)
    scale_pos_weight: float | None = Field(None, ge=0)

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ModelCard(_Strict):
    intended_use: str = Field(min_length=1)
    population: str = Field(min_length=1)
    limitations: list[str] = Field(default_factory=list)


class TaskSpec(_Strict):
    """One task file."""

    name: str = Field(pattern=_NAME, description="Lower-case words joined by '-': the task's key.")
    description: str = Field(min_length=1)
    record_id: str = Field(description="The column naming one row (one scored record).")
    group_id: str = Field(description="The column splits are grouped by (the patient); may equal record_id.")
    target: Target
    columns: list[Column] = Field(min_length=1)
    source: Source = Field(default_factory=Source)
    missing_markers: list[str] = Field(default_factory=lambda: [""], description="Cells meaning 'missing'.")
    exclusions: list[Exclusion] = Field(default_factory=list)
    subgroups: list[Subgroup] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)
    operating_threshold: float | None = Field(None, gt=0, lt=1)
    gate: GateOverrides = Field(default_factory=GateOverrides)
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    monitoring: MonitoringOverrides = Field(default_factory=MonitoringOverrides)
    model_card: ModelCard
    factor_terms: dict[str, str] = Field(
        default_factory=dict,
        description="Factor -> the clinical words its explanation's retrieval query adds, where the corpus's "
        "vocabulary differs from the column's ('length of stay' for time_in_hospital).",
    )

    def column(self, name: str) -> AnyColumn | None:
        return next((column for column in self.columns if column.name == name), None)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def feature_columns(self) -> list[NumericColumn | CategoricalColumn | BooleanColumn]:
        """Declared columns that are model inputs: not the target, not an id, not marked `feature: false`."""
        roles = {self.target.column, self.record_id, self.group_id}
        return [
            column
            for column in self.columns
            if column.feature and column.name not in roles and not isinstance(column, IdentifierColumn)
        ]


class LoadedTask(BaseModel):
    """A task file that loaded: its spec, where it came from and the sha256 of its bytes."""

    model_config = ConfigDict(frozen=True)

    spec: TaskSpec
    path: Path
    sha256: str


def load_task(path: Path | str) -> LoadedTask:
    """Read and check a task file; raise `TaskFileError` listing every problem at once."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise TaskFileError(str(path), [f"cannot read the file ({error.strerror})"]) from None
    return LoadedTask(spec=parse_task(raw, source=str(path)), path=path, sha256=hashlib.sha256(raw).hexdigest())


def read_yaml(text: bytes | str) -> Any:
    """The YAML document `text` holds, read by libyaml when PyYAML has it (every PyYAML wheel does):
    40 times faster on readmission's task file, which every serving cold start reads. A file libyaml
    refuses is read again in Python, for the same error and line as without it."""
    import yaml  # see parse_task: not every image has PyYAML

    fast_loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=fast_loader)  # a safe loader, in C or in Python
    except yaml.YAMLError:
        return yaml.safe_load(text)


def parse_task(text: bytes | str, *, source: str = "<task>") -> TaskSpec:
    # Imported here: only reading a task file needs PyYAML, and the monitoring image, which reads a
    # task's subgroups from its monitoring reference, has no PyYAML (lambdas/monitoring_image/requirements.lock).
    import yaml

    try:
        document = read_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise TaskFileError(source, [f"{where}not valid YAML"]) from None
    if not isinstance(document, dict):
        raise TaskFileError(source, ["the file must hold a mapping of keys (name, target, columns, ...)"])
    try:
        spec = TaskSpec.model_validate(document)
    except ValidationError as error:
        raise TaskFileError(source, [_field_problem(item, document) for item in error.errors()]) from None
    problems = cross_field_problems(spec)
    if problems:
        raise TaskFileError(source, problems)
    return spec


def _field_problem(item: Any, document: dict[str, Any]) -> str:
    return f"{_location(tuple(item['loc']), document)}: {item['msg']}"


def _location(loc: tuple[Any, ...], document: dict[str, Any]) -> str:
    """`('columns', 4, 'numeric', 'unit')` -> `columns[4] (chol).unit`: index, name, no union tag."""
    parts: list[str] = []
    for position, key in enumerate(loc):
        if isinstance(key, int):
            parts[-1] = f"{parts[-1]}[{key}]" if parts else f"[{key}]"
            if loc[:position] == ("columns",):
                parts[-1] += _column_name(document, key)
        elif loc[:position][:1] == ("columns",) and position == 2 and key in _COLUMN_TYPES:
            continue
        else:
            parts.append(str(key))
    return ".".join(parts) or "(top level)"


def _column_name(document: dict[str, Any], index: int) -> str:
    columns = document.get("columns")
    if isinstance(columns, list) and index < len(columns) and isinstance(columns[index], dict):
        name = columns[index].get("name")
        if isinstance(name, str):
            return f" ({name})"
    return ""


def cross_field_problems(spec: TaskSpec) -> list[str]:
    """The checks between fields, all of them: every name used must be declared, once."""
    problems = [
        f"columns: {name!r} is declared {times} times"
        for name, times in Counter(spec.column_names + spec.source.added_columns()).items()
        if times > 1
    ]
    declared = set(spec.column_names) | set(spec.source.added_columns())
    references = [
        ("record_id", spec.record_id),
        ("group_id", spec.group_id),
        ("target.column", spec.target.column),
        *((f"subgroups[{i}] ({s.name}).column", s.column) for i, s in enumerate(spec.subgroups)),
        *((f"exclusions[{i}].column", e.column) for i, e in enumerate(spec.exclusions)),
    ]
    problems += [f"{where}: column {name!r} is not declared" for where, name in references if name not in declared]
    problems += _target_problems(spec)
    problems += [
        f"plugins[{i}]: unknown plugin {name!r} (known: {', '.join(sorted(KNOWN_PLUGINS))})"
        for i, name in enumerate(spec.plugins)
        if name not in KNOWN_PLUGINS
    ]
    problems += [
        f"subgroups: name {name!r} is used {times} times"
        for name, times in Counter(s.name for s in spec.subgroups).items()
        if times > 1
    ]
    problems += _numeric_only(
        spec, ((f"subgroups[{i}] ({s.name}).bins", s.column) for i, s in enumerate(spec.subgroups) if s.bins)
    )
    if not spec.plugins:  # a plugin's factors are not declared in the file, so only a plain task can be checked
        features = {column.name for column in spec.feature_columns} | set(spec.source.added_columns())
        problems += [
            f"factor_terms: {name!r} is not a feature column" for name in spec.factor_terms if name not in features
        ]
    if spec.source.ignore and not spec.source.header:
        problems.append("source.ignore: only a file with a header can have columns the task ignores")
    problems += [f"source.ignore: {name!r} is also declared" for name in spec.source.ignore if name in declared]
    if spec.source.file_label and spec.source.row_id is None and spec.record_id == spec.source.file_label.column:
        problems.append("record_id: the file label names a file, not a row")
    return problems


def _target_problems(spec: TaskSpec) -> list[str]:
    column = spec.column(spec.target.column)
    if column is None:
        return []
    if spec.target.positive_if is not None:
        return _numeric_only(spec, [("target.positive_if", column.name)])
    if isinstance(column, CategoricalColumn):
        unknown = [value for value in spec.target.positive or [] if value not in column.codes]
        return [f"target.positive: {value!r} is not a code of column {column.name!r}" for value in unknown]
    return []


def _numeric_only(spec: TaskSpec, uses: Iterable[tuple[str, str]]) -> list[str]:
    problems = []
    for where, name in uses:
        column = spec.column(name)
        if column is not None and not isinstance(column, NumericColumn):
            problems.append(f"{where}: column {name!r} is {column.type}, and this needs a numeric column")
    return problems
