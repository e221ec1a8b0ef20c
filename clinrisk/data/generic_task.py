"""A task made from its task file alone (no plugin): heart disease, or what `clinrisk task init` drafts.

Frames between stages hold the data files' text cells (with the task's added columns), exactly as
read: a channel written and read back is validated again by the same rules, so training and
evaluation see what validation passed, with no second encoding of types to keep in step.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clinrisk.data.splits import split_by_group
from clinrisk.data.task_port import Examples, ModelCardText
from clinrisk.data.task_synth import synthetic_rows, write_task_file
from clinrisk.data.task_tables import read_task_files, validate_task_table
from clinrisk.data.validation import DataValidationError, ValidationReport
from clinrisk.settings import task_model_name
from clinrisk.tasks.readmission.features import FeatureSchema, FeatureSpec
from clinrisk.taskspec.features import feature_matrix, feature_names
from clinrisk.taskspec.rules import task_gate, task_monitoring
from clinrisk.taskspec.spec import CategoricalColumn, LoadedTask, Subgroup, TaskSpec
from clinrisk.taskspec.summary_fields import summary_fields

if TYPE_CHECKING:
    from clinrisk.settings import Settings

FEATURE_SCHEMA_VERSION = 1
_CHANNEL_COMPRESSION = {"method": "gzip", "mtime": 0}


def _feature_schema(spec: TaskSpec) -> FeatureSchema:
    described: list[FeatureSpec] = []
    for column in spec.feature_columns:
        what = column.description or column.name
        if isinstance(column, CategoricalColumn):
            described += [
                FeatureSpec(name=f"{column.name}={code}", description=f"{what}: {label}")
                for code, label in column.codes.items()
            ]
        else:
            described.append(FeatureSpec(name=column.name, description=what))
    assert [f.name for f in described] == feature_names(spec)
    return FeatureSchema(version=FEATURE_SCHEMA_VERSION, features=described)


def subgroup_levels(subgroup: Subgroup, values: pd.Series) -> np.ndarray:
    """A subgroup's level per row: the value itself, or its bin (`<45`, `45-55`, `≥65`); missing None."""
    if subgroup.bins is None:
        return values.to_numpy(dtype=object)
    edges = subgroup.bins
    names = [f"<{_edge(edges[0])}"]
    names += [f"{_edge(low)}-{_edge(high)}" for low, high in itertools.pairwise(edges)]
    names.append(f"≥{_edge(edges[-1])}")
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    index = np.digitize(numbers, edges, right=False)
    return np.array([None if np.isnan(x) else names[i] for x, i in zip(numbers, index, strict=True)], dtype=object)


def _edge(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class GenericTask:
    source: LoadedTask

    @property
    def spec(self) -> TaskSpec:
        return self.source.spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def feature_schema(self) -> FeatureSchema:
        return _feature_schema(self.spec)

    @property
    def card(self) -> ModelCardText:
        card = self.spec.model_card
        return ModelCardText(
            task=self.spec.description,
            intended_use=card.intended_use,
            population=card.population,
            limitations="; ".join(card.limitations) or "none stated in the task file",
        )

    def model_name(self, settings: Settings) -> str:
        return task_model_name(self.name, settings.model_name)

    def experiment_name(self, settings: Settings) -> str:
        return f"clinrisk-{self.name}"

    def settings(self, settings: Settings) -> Settings:
        update: dict[str, Any] = {
            "gate": task_gate(self.spec, settings.gate),
            "monitoring": task_monitoring(self.spec, settings.monitoring),
        }
        if self.spec.operating_threshold is not None:
            update["operating_threshold"] = self.spec.operating_threshold
            # The `medium` band must start below `high`; keep its share of the threshold.
            medium = settings.serving.medium_risk_from / settings.operating_threshold * self.spec.operating_threshold
            update["serving"] = settings.serving.model_copy(update={"medium_risk_from": medium})
        return settings.model_copy(update=update)

    def hyperparameters(self) -> dict[str, Any]:
        return self.spec.training.given()

    def validate(self, paths: Sequence[Path]) -> ValidationReport:
        return validate_task_table(self.spec, read_task_files(self.spec, paths)).report

    def load(self, paths: Sequence[Path]) -> pd.DataFrame:
        return self._checked(read_task_files(self.spec, paths))

    def _checked(self, raw: pd.DataFrame) -> pd.DataFrame:
        report = validate_task_table(self.spec, raw).report
        if not report.ok:
            raise DataValidationError(report)
        return raw

    def write_channel(self, frame: pd.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, compression=_CHANNEL_COMPRESSION)

    def read_channel(self, files: Sequence[Path]) -> pd.DataFrame:
        frames = [pd.read_csv(file, dtype=str, keep_default_na=False) for file in files]
        return self._checked(pd.concat(frames, ignore_index=True))

    def split(self, frame: pd.DataFrame, *, seed: int, test: float, validation: float) -> dict[str, pd.DataFrame]:
        return split_by_group(frame, self.spec.group_id, seed=seed, test=test, validation=validation)

    def examples(self, frame: pd.DataFrame) -> Examples:
        table = validate_task_table(self.spec, frame)
        known = table.labels.notna().to_numpy()
        typed = table.frame[known].reset_index(drop=True)
        return Examples(
            rows=typed,
            features=feature_matrix(self.spec, typed),
            labels=table.labels[known].to_numpy(dtype=np.int8),
            groups=typed[self.spec.group_id].to_numpy(dtype=object),
            subgroups={s.name: subgroup_levels(s, typed[s.column]) for s in self.spec.subgroups},
            excluded=table.excluded,
        )

    def factors(self) -> dict[str, str]:
        factors: dict[str, str] = {}
        for column in self.spec.feature_columns:
            if isinstance(column, CategoricalColumn):
                factors |= {f"{column.name}={code}": column.name for code in column.codes}
            else:
                factors[column.name] = column.name
        return factors

    def similar_fields(self, examples: Examples) -> dict[str, np.ndarray]:
        return {
            name: np.array(["missing" if v is None else str(v) for v in examples.subgroups[name]], dtype=str)
            for name in summary_fields(self.spec)
        }

    def synthesize(self, directory: Path, *, rows: int, seed: int) -> list[Path]:
        return [write_task_file(self.spec, synthetic_rows(self.spec, rows=rows, seed=seed), directory)]

    def input_example(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns=[self.spec.target.column]).head(5)
