"""The validate state of the retraining state machine (the ValidateData state): check the
execution input, then strictly validate the encounters file in the data bucket and write the
patient-grouped split to the artifacts bucket, one channel per prefix.

Event: `clinrisk.pipeline.contracts.ValidateInput` (`run_id`, `request` = the execution input,
`default_data_uri`); result: `clinrisk.pipeline.contracts.ValidatedRun` as JSON. Errors: `BadEventError`
for bad execution input (before anything is read), `DataNotFoundError` for a missing file,
`DataValidationError` (every problem, with counts and row numbers, never values) or
`DataFileError` for a bad one: nothing is trained, and the state machine's catch notifies and
leaves the champion serving.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.pipeline import contracts, stages
from clinrisk.runtime import data_store
from clinrisk.uris import s3_bucket
from lambdas.common import metrics, runtime, stage_handler


@stage_handler(contracts.ValidateInput)
def handler(request: contracts.ValidateInput, context: LambdaContext) -> dict[str, Any]:
    current = runtime()
    data = data_store(current.settings, s3_bucket(request.data_uri))
    output = stages.validate_stored_data(request, data=data, store=current.ports.store, settings=current.settings)
    metrics.add_metric(name="RowsValidated", unit=MetricUnit.Count, value=output.rows["input"])
    return output.model_dump(mode="json")
