"""The batch-scoring state machine's Lambdas (state_machines/batch_scoring.asl.json):

- `plan`: the Plan state, in the "pipeline" bundle (it checks the file with pandas);
- `score_chunk`: each Distributed Map child's ScoreChunk state, in the "predict" bundle;
- `finish`: the Finish state, in the "predict" bundle.

Events and results are the `clinrisk.batch.cloud` models; errors reach Step Functions by class
name (lambdas/common.py). This module imports nothing heavy, so the predict bundle (no pandas)
loads it: `clinrisk.batch.cloud` imports pandas only inside Plan's work.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.batch import cloud as batch_cloud
from clinrisk.runtime import batch_ports
from clinrisk.settings import Settings
from lambdas.common import logger, metrics, stage_handler


@functools.cache
def ports() -> batch_cloud.BatchPorts:
    """Built once per cold start; the loaded models stay cached with them while the Lambda is warm."""
    return batch_ports(Settings(), batch_cloud.BatchSettings())


@stage_handler(batch_cloud.PlanInput)
def plan(request: batch_cloud.PlanInput, context: LambdaContext) -> dict[str, Any]:
    output = batch_cloud.plan_batch(request, ports=ports())
    metrics.add_metric(name="BatchRowsRead", unit=MetricUnit.Count, value=output.rows_read)
    metrics.add_metric(name="BatchRowsInvalid", unit=MetricUnit.Count, value=output.rows_invalid)
    return output.model_dump(mode="json")


@stage_handler(batch_cloud.ScoreChunkInput)
def score_chunk(request: batch_cloud.ScoreChunkInput, context: LambdaContext) -> dict[str, Any]:
    output = batch_cloud.score_chunk(request, ports=ports())
    metrics.add_metric(name="BatchRowsScored", unit=MetricUnit.Count, value=output.rows_scored)
    return output.model_dump(mode="json")


@stage_handler(batch_cloud.FinishInput)
def finish(request: batch_cloud.FinishInput, context: LambdaContext) -> dict[str, Any]:
    summary = batch_cloud.finish_batch(request, ports=ports())
    logger.info("batch written", extra={"run_id": summary.run_id, "rows_scored": summary.rows_scored})
    return summary.model_dump(mode="json")
