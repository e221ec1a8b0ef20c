"""The validate state of the retraining state machine: strict validation of the encounters file
in the data store, then the patient-grouped split written as one channel per prefix.

Event: `clinrisk.stages.ValidateInput`; result: `clinrisk.stages.ValidateOutput` as JSON.
Errors: `BadEventError` for an event that does not fit; `DataValidationError` (every problem,
with counts and row numbers, never values) or `DataFileError` for a bad file: nothing is
trained, and the state machine's catch notifies and leaves the champion serving.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk import stages
from lambdas.common import logger, metrics, runtime, stage_handler, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@stage_handler(stages.ValidateInput)
def handler(request: stages.ValidateInput, context: LambdaContext) -> dict[str, Any]:
    current = runtime()
    output = stages.validate_stored_data(request, store=current.ports.store, settings=current.settings)
    metrics.add_metric(name="RowsValidated", unit=MetricUnit.Count, value=output.rows["input"])
    return output.model_dump(mode="json")
