"""The promote state of the retraining state machine: make a gated version the champion (the
registry alias, then the serving pointer), unless the champion changed since it was evaluated.

Event: `clinrisk.pipeline.contracts.PromoteInput`; result: `clinrisk.pipeline.contracts.PromoteOutput` as JSON, whose
`outcome` is "promoted" or "stale". Errors: `BadEventError` for an event that does not fit,
else the `ClinriskError` subclass (e.g. `RegistryError` for an unknown version).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.pipeline import contracts, stages
from lambdas.common import metrics, runtime, stage_handler


@stage_handler(contracts.PromoteInput)
def handler(request: contracts.PromoteInput, context: LambdaContext) -> dict[str, Any]:
    output = stages.promote(request, registry=runtime().ports.registry)
    metric = "Promotions" if output.outcome == "promoted" else "StalePromotions"
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    return output.model_dump(mode="json")
