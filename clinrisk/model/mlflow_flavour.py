"""The MLflow pyfunc flavour of a clinrisk model: records in, probabilities out, for every task.

Logged as "models from code" (this file is the model's code; `set_model` below names the
model object), so nothing is pickled. `mlflow models serve` and `mlflow.pyfunc.load_model`
use it; the serving Lambda does not (it loads the model directory itself, without MLflow).

- readmission: raw UCI encounters in; its plugins build the features (prior encounters, ICD-9 groups);
- any other task: its task file is logged beside the model directory (`TASK_FILE_ARTIFACT`), so a
  version loads without a task catalogue. Records hold the task's declared columns but the target
  (codes as text, numbers as numbers, missing as None/NaN); they are checked as the task's data files
  are (`clinrisk.data.task_tables.validate_task_records`) and made into the feature matrix training
  made (`clinrisk.taskspec.features.feature_matrix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from clinrisk.model.risk_model import RiskModel
from clinrisk.taskspec.spec import TaskSpec

MODEL_DIR_ARTIFACT = "model_dir"
TASK_FILE_ARTIFACT = "task_file"
PROBABILITY_COLUMN = "probability"


def task_features(spec: TaskSpec, records: pd.DataFrame) -> pd.DataFrame:
    """The feature matrix of `records`, or `DataValidationError` naming every problem (never a value)."""
    from clinrisk.data.task_tables import validate_task_records
    from clinrisk.data.validation import DataValidationError
    from clinrisk.taskspec.features import feature_matrix
    from clinrisk.taskspec.spec import normalise_code

    marker = spec.missing_markers[0]
    text = records.astype(object).map(lambda value: marker if pd.isna(value) else normalise_code(value))
    table = validate_task_records(spec, text)
    if not table.report.ok:
        raise DataValidationError(table.report)
    return feature_matrix(spec, table.frame)


class ClinriskModel(PythonModel):
    spec: TaskSpec | None

    def load_context(self, context: Any) -> None:
        model_dir = Path(context.artifacts[MODEL_DIR_ARTIFACT])
        task_file = context.artifacts.get(TASK_FILE_ARTIFACT)
        if task_file is None:  # readmission
            self.spec, self.model = None, RiskModel.load(model_dir)
            return
        from clinrisk.data.generic_task import GenericTask
        from clinrisk.taskspec.spec import load_task

        task = GenericTask(load_task(Path(task_file)))
        self.spec, self.model = task.spec, RiskModel.load(model_dir, task.feature_schema)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.spec is not None:
            return pd.DataFrame(
                {PROBABILITY_COLUMN: self.model.predict_features(task_features(self.spec, model_input))}
            )
        from clinrisk.data.validation import ensure_valid

        encounters = ensure_valid(model_input, require_target=False)
        return pd.DataFrame({PROBABILITY_COLUMN: self.model.predict(encounters)})


set_model(ClinriskModel())
