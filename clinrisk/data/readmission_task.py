"""The readmission task behind the task port: `tasks/readmission.yaml` names the readmission
plugins, and they bind it to the code of `clinrisk.tasks.readmission`, unchanged.

The UCI encounter schema validates (`clinrisk.data.validation`), the features add prior-encounter
counts and ICD-9 groups, the death-or-hospice exclusion and the factors are its own, and the
synthetic cohort is `generate_cohort`. The registered model, experiment, operating threshold and
gate stay the deployment's settings, as they were before there were tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clinrisk.data.splits import split_by_patient
from clinrisk.data.tables import read_table, write_table
from clinrisk.data.task_port import Examples, ModelCardText
from clinrisk.data.validation import ValidationReport, ensure_valid, validate_encounters
from clinrisk.tasks.readmission import model_card
from clinrisk.tasks.readmission.explanation import summary_fields
from clinrisk.tasks.readmission.factors import FACTORS, _factor_of
from clinrisk.tasks.readmission.features import (
    FEATURE_NAMES,
    FEATURE_SCHEMA,
    FeatureSchema,
    build_features,
    readmitted_within_30_days,
    trainable_mask,
)
from clinrisk.tasks.readmission.schema import PATIENT_ID, TARGET
from clinrisk.taskspec.spec import LoadedTask

if TYPE_CHECKING:
    from clinrisk.settings import Settings

PLUGINS: frozenset[str] = frozenset({"readmission.prior_encounters", "readmission.icd9_groups"})


@dataclass(frozen=True)
class ReadmissionTask:
    source: LoadedTask

    @property
    def name(self) -> str:
        return self.source.spec.name

    @property
    def feature_schema(self) -> FeatureSchema:
        return FEATURE_SCHEMA

    @property
    def card(self) -> ModelCardText:
        return ModelCardText(
            task=model_card.TASK,
            intended_use=model_card.INTENDED_USE,
            population=model_card.POPULATION,
            limitations=model_card.LIMITS,
        )

    def model_name(self, settings: Settings) -> str:
        return settings.model_name

    def experiment_name(self, settings: Settings) -> str:
        return settings.experiment_name

    def settings(self, settings: Settings) -> Settings:
        return settings

    def hyperparameters(self) -> dict[str, Any]:
        return self.source.spec.training.given()

    def validate(self, paths: Sequence[Path]) -> ValidationReport:
        return validate_encounters(self._read(paths)).report

    def load(self, paths: Sequence[Path]) -> pd.DataFrame:
        return ensure_valid(self._read(paths))

    @staticmethod
    def _read(paths: Sequence[Path]) -> pd.DataFrame:
        frames = [read_table(path) for path in paths]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def write_channel(self, frame: pd.DataFrame, path: Path) -> None:
        write_table(frame, path)

    def read_channel(self, files: Sequence[Path]) -> pd.DataFrame:
        return self.load(files)

    def split(self, frame: pd.DataFrame, *, seed: int, test: float, validation: float) -> dict[str, pd.DataFrame]:
        return split_by_patient(frame, seed=seed, test=test, validation=validation)

    def examples(self, frame: pd.DataFrame) -> Examples:
        # Prior-encounter counts need every encounter of the patient, so features come first
        # and the death/hospice rows are dropped after.
        features = build_features(frame)
        keep = trainable_mask(frame)
        kept = frame[keep].reset_index(drop=True)
        return Examples(
            rows=kept,
            features=features[keep].reset_index(drop=True),
            labels=readmitted_within_30_days(kept),
            groups=kept[PATIENT_ID].to_numpy(),
            subgroups={s.name: kept[s.column].to_numpy(dtype=object) for s in self.source.spec.subgroups},
            excluded=int((~keep).sum()),
        )

    @cached_property
    def _factors(self) -> dict[str, str]:
        return {feature: FACTORS[_factor_of(feature)].name for feature in FEATURE_NAMES}

    def factors(self) -> dict[str, str]:
        return dict(self._factors)

    def similar_fields(self, examples: Examples) -> dict[str, np.ndarray]:
        return dict(summary_fields(examples.rows))

    def synthesize(self, directory: Path, *, rows: int, seed: int) -> list[Path]:
        from clinrisk.tasks.readmission.synth import generate_cohort

        path = directory / f"synthetic-{rows}-seed{seed}.parquet"
        if not path.exists():
            write_table(generate_cohort(rows, seed=seed), path)
        return [path]

    def input_example(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns=[TARGET]).head(5)
