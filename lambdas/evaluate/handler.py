"""The evaluate state of the retraining state machine: unpack the training job's model.tar.gz
into the model directory, score the model, its baseline and the champion on the test patients,
gate, and register the model as the challenger.

Event: `clinrisk.pipeline.contracts.EvaluateInput`; result: `clinrisk.pipeline.contracts.EvaluateOutput` as JSON.
Errors: `BadEventError` for an event that does not fit, `ModelArchiveError` for a missing,
foreign or unsafe archive (nothing is registered), else the `ClinriskError` subclass.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.pipeline import contracts, stages
from lambdas.common import metrics, runtime, stage_handler


@stage_handler(contracts.EvaluateInput)
def handler(request: contracts.EvaluateInput, context: LambdaContext) -> dict[str, Any]:
    current = runtime()
    output = stages.evaluate_trained(request, ports=current.ports, settings=current.settings)
    metrics.add_metric(name="GatePassed", unit=MetricUnit.Count, value=int(output.gate_passed))
    if (auc := output.metrics.get("test_roc_auc")) is not None:
        metrics.add_metric(name="TestRocAuc", unit=MetricUnit.NoUnit, value=auc)
    return output.model_dump(mode="json")
