"""The monitoring reference of a task made from its task file alone, from its declared columns.

Numeric columns get the reference's quantile bins, categorical columns one bin per declared code
(boolean ones `0` and `1`), and the subgroups are the task file's. The held-out rows are scored by
the trained model exactly as serving scores them (`TaskServingModel`), and their fields are counted
in the text form capture keeps (`clinrisk.capture.task_inputs`), so a window of captures and its
reference bin the same strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrisk.capture.task_inputs import captured_columns, input_values
from clinrisk.monitoring.fields import FieldKind
from clinrisk.monitoring.reference import MonitoringReference, build_reference, plain_value, reference_for_frame
from clinrisk.taskspec.spec import CategoricalColumn, NumericColumn, TaskSpec

if TYPE_CHECKING:
    import pandas as pd

    from clinrisk.data.task_port import Task
    from clinrisk.settings import Settings

BOOLEAN_CODES = ["0", "1"]  # normalise_code of False and True


def declared_fields(spec: TaskSpec) -> tuple[dict[str, FieldKind], dict[str, list[str]]]:
    """Each model input's binning, and the declared codes of the categorical ones."""
    kinds: dict[str, FieldKind] = {}
    codes: dict[str, list[str]] = {}
    for column in spec.feature_columns:
        if isinstance(column, NumericColumn):
            kinds[column.name] = "numeric"
            continue
        kinds[column.name] = "categorical"
        codes[column.name] = list(column.codes) if isinstance(column, CategoricalColumn) else list(BOOLEAN_CODES)
    return kinds, codes


def reference_for_task(task: Task, model_dir: Path, frame: pd.DataFrame) -> MonitoringReference:
    """The reference of `task`'s model in `model_dir`, from held-out rows as `task.read_channel` gives
    them: readmission's from its encounter schema, any other task's from its task file. (The task port
    lives below monitoring, so the choice is made here, by the binding `clinrisk.data.task_binding`
    made: a task file without plugins is a `GenericTask`.)"""
    from clinrisk.data.generic_task import GenericTask
    from clinrisk.settings import Settings

    if isinstance(task, GenericTask):
        return task_reference(model_dir, task.spec, frame, task.settings(Settings()))
    return reference_for_frame(model_dir, frame)


def task_reference(model_dir: Path, spec: TaskSpec, frame: pd.DataFrame, settings: Settings) -> MonitoringReference:
    """Score `frame` (the task's validation channel, as its text cells) with the model in
    `model_dir` as serving would, and make the task's reference. `settings`: the task's own."""
    from clinrisk.data.task_tables import validate_task_table
    from clinrisk.serving.task_scoring import TaskServingModel, task_bands

    typed = validate_task_table(spec, frame).frame
    records: list[dict[str, Any]] = [
        {str(k): plain_value(v) for k, v in row.items()} for row in typed.to_dict("records")
    ]
    model = TaskServingModel.load(model_dir, spec=spec, name="reference", version=0, checksum="")
    bands = task_bands(settings, spec)
    scored = model.score(records, bands=bands, top_k=settings.serving.top_factors)
    names = captured_columns(spec)
    inputs = [input_values(names, record) for record in records]
    kinds, codes = declared_fields(spec)
    columns = {name: [values.get(name) for values in inputs] for name in names}
    return build_reference(
        columns, scored, high_from=bands.high_from, kinds=kinds, categories=codes,
        subgroups=spec.subgroups, captured_in="inputs",
    )  # fmt: skip
