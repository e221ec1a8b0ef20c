"""The task port: what the generic pipeline, registry and evaluation need from one clinical risk task.

A `Task` is built from a task file (`clinrisk.taskspec`). Two implementations exist:
- `clinrisk.data.generic_task.GenericTask`, for any task file without plugins (heart disease, or
  whatever `clinrisk task init` drafts): everything comes from the file's declarations;
- `clinrisk.data.readmission_task.ReadmissionTask`, bound by the readmission plugins its file names:
  the UCI encounter schema, ICD-9 groups, prior-encounter counts, factors, synthetic cohort and
  model card stay the code of `clinrisk.tasks.readmission`.

`clinrisk.data.task_binding.resolve_task` turns a task name or file into the right one.
Frames move between the stages as each task keeps them (the canonical encounter frame for
readmission, the validated text cells for a generic task); only the task reads them, through
`examples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from clinrisk.settings import DEFAULT_TASK
from clinrisk.taskspec.spec import LoadedTask

if TYPE_CHECKING:
    import pandas as pd

    from clinrisk.data.validation import ValidationReport
    from clinrisk.settings import Settings
    from clinrisk.tasks.readmission.features import FeatureSchema

__all__ = ["DEFAULT_TASK", "Examples", "ModelCardText", "Task"]


@dataclass(frozen=True)
class Examples:
    """The rows of a frame a model may learn from or be scored on, ready for a model.

    `rows` are those rows as the task keeps them (for examples and logging), `groups` the group id
    of each (the patient), `subgroups` each fairness attribute's level per row (binned where the
    task file says so)."""

    rows: pd.DataFrame
    features: pd.DataFrame
    labels: np.ndarray
    groups: np.ndarray
    subgroups: dict[str, np.ndarray]
    excluded: int


@dataclass(frozen=True)
class ModelCardText:
    """The task's words on its model card; metrics and gate reasons come from the evaluation."""

    task: str
    intended_use: str
    population: str
    limitations: str


class Task(Protocol):
    """One clinical risk task, as the generic code uses it."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> LoadedTask:
        """The task file: its spec, path and sha256."""
        ...

    @property
    def feature_schema(self) -> FeatureSchema: ...

    @property
    def card(self) -> ModelCardText: ...

    def model_name(self, settings: Settings) -> str:
        """The registered model's name: one registered model per task."""
        ...

    def experiment_name(self, settings: Settings) -> str: ...

    def settings(self, settings: Settings) -> Settings:
        """`settings` with the task's operating threshold and gate overrides applied."""
        ...

    def hyperparameters(self) -> dict[str, Any]:
        """The task file's training overrides, as the training job's hyperparameters."""
        ...

    def validate(self, paths: Sequence[Path]) -> ValidationReport:
        """Every problem of the data files at once, by row and column, never a value."""
        ...

    def load(self, paths: Sequence[Path]) -> pd.DataFrame:
        """The data files as one frame, or `DataValidationError` listing every problem."""
        ...

    def write_channel(self, frame: pd.DataFrame, path: Path) -> None: ...

    def read_channel(self, files: Sequence[Path]) -> pd.DataFrame: ...

    def split(self, frame: pd.DataFrame, *, seed: int, test: float, validation: float) -> dict[str, pd.DataFrame]:
        """Train, validation and test frames; no group (patient) is in two of them."""
        ...

    def examples(self, frame: pd.DataFrame) -> Examples: ...

    def factors(self) -> dict[str, str]:
        """Each feature's reported factor (the input field a clinician recognises)."""
        ...

    def similar_fields(self, examples: Examples) -> dict[str, np.ndarray]:
        """The coded fields of each example that similar-patient aggregates report (strings; no
        identifier, no value as entered)."""
        ...

    def synthesize(self, directory: Path, *, rows: int, seed: int) -> list[Path]:
        """Write a synthetic cohort with a planted signal that `load` accepts; returns its files."""
        ...

    def input_example(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A few rows of model input as the task's records hold them (no target), for the tracked run."""
        ...
