"""The prediction API's entry point: `POST /v1/predict`, `GET /v1/model`, `GET /v1/tasks`,
`POST /v1/tasks/{task}/predict`, `GET /v1/tasks/{task}/model`, `GET /health`, `/v1/docs`,
`/v1/openapi.json`.

API Gateway (Cognito authorizer) fronts it in the cloud; `clinrisk serve` fronts it locally with
the same event shape. The guard (`guard.py`) refuses what must not reach the resolver; the resolver
(`api.py`) runs the routes (`routes.py`); `errors.py` maps every exception to a response;
`contract.py` holds the OpenAPI document.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.predict import errors, routes, task_routes
from lambdas.predict.api import OPENAPI_FILE, app, logger, metrics, tracer
from lambdas.predict.contract import openapi_json
from lambdas.predict.guard import MAX_BODY_BYTES, guarded_resolve

# Importing the routes and the error mapping registers them on the resolver.
__all__ = ["MAX_BODY_BYTES", "OPENAPI_FILE", "errors", "handler", "logger", "openapi_json", "routes", "task_routes"]


@logger.inject_lambda_context(log_event=False, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return guarded_resolve(app, event, context)
