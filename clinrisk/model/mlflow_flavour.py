"""The MLflow pyfunc flavour of a clinrisk model: raw UCI encounters in, probabilities out.

Logged as "models from code" (this file is the model's code; `set_model` below names the
model object), so nothing is pickled. `mlflow models serve` and `mlflow.pyfunc.load_model`
use it; the serving Lambda does not (it loads the model directory itself, without MLflow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from clinrisk.model.risk_model import RiskModel

MODEL_DIR_ARTIFACT = "model_dir"
PROBABILITY_COLUMN = "probability"


class ReadmissionModel(PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = RiskModel.load(Path(context.artifacts[MODEL_DIR_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from clinrisk.data.validation import ensure_valid

        encounters = ensure_valid(model_input, require_target=False)
        return pd.DataFrame({PROBABILITY_COLUMN: self.model.predict(encounters)})


set_model(ReadmissionModel())
