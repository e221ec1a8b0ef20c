"""The scheduled monitor (EventBridge, hourly): for every task with captures, the window's captures
against each of its served versions' reference; the metrics leave as EMF lines in this function's log.
Nothing here but wiring: `clinrisk.monitoring.cloud.monitor_every_task_in_cloud` does the work."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.monitoring.cloud import monitor_every_task_in_cloud
from clinrisk.monitoring.window import utc_now
from clinrisk.runtime import build_store
from clinrisk.settings import Settings

logger = Logger(service="clinrisk-monitor")


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    import boto3  # type: ignore[import-untyped, unused-ignore]

    settings = Settings()
    results = monitor_every_task_in_cloud(settings, s3=boto3.client("s3"), store=build_store(settings), now=utc_now())
    summary = [
        {
            "task": r.task,
            "model_version": r.model_version,
            "rows": r.rows,
            "published": r.published,
            "drifted": r.drifted_fields,
        }
        for r in results
    ]
    logger.info("monitored", extra={"results": summary})
    return {"results": summary}
