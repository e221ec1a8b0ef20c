"""The explain API: `POST /v1/explain` (scope `explain`).

API Gateway (Cognito authorizer) fronts it in the cloud; `clinrisk serve` routes /v1/explain to it
locally with the same event shape. The route parses into `clinrisk.explain.service` models and
calls `explain` with the ports (refusals before parsing are predict's guard: 413, 403 without the
`explain` scope, 415); degraded answers are answers (200 with `degraded: true`), so only
a request that cannot be scored at all becomes an error, mapped in one place per error type. Logs
carry ids, counts, versions, timings and degradation reasons, never an encounter's values or the
narrative.

No `from __future__ import annotations` here: Powertools reads the route signature at run time.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.explain import routes
from lambdas.explain.api import app, logger, metrics, tracer
from lambdas.predict.errors import register_error_responses
from lambdas.predict.guard import guarded_resolve

# The same error mapping as predict: 422 with field paths (never values), 503 without a champion, 500.
register_error_responses(app)
__all__ = ["handler", "routes"]


@logger.inject_lambda_context(log_event=False, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return guarded_resolve(app, event, context)
