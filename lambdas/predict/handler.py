"""The prediction API: `POST /v1/predict`, `GET /v1/model`, `GET /health`, and `/v1/docs`.

API Gateway (Cognito authorizer) fronts it in the cloud; `clinrisk serve` fronts it locally
with the same event shape. Routes parse into `clinrisk.prediction` models and call its
functions; every exception becomes a response in `_error_response`. Logs carry ids, counts,
versions and timings, never an encounter's values.

No `from __future__ import annotations` here: Powertools reads the route signatures at run
time to find the body model and the response model.
"""

import functools
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.auth import granted_scopes
from clinrisk.model_holder import NoChampionError
from clinrisk.ports import EndpointFailedError, EndpointUnavailableError
from clinrisk.prediction import ModelInfo, Outcome, PredictRequest, PredictResponse, Serving, build_serving
from clinrisk.settings import Settings

SERVICE = "clinrisk-predict"
# API Gateway accepts 10 MB; 1,000 encounters are about 1.5 MB of JSON, so anything much
# larger is not a valid request and is refused before it is parsed.
MAX_BODY_BYTES = 4 * 1024 * 1024

# Routes that record no metric (health, errors) are normal here, not worth a warning each.
warnings.filterwarnings("ignore", message="No application metrics to publish")
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "clinrisk")
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
API_TITLE = "clinrisk prediction API"
API_VERSION = "1"
API_DESCRIPTION = (
    "30-day readmission risk of diabetic inpatients (UCI Diabetes 130-US hospitals schema), with "
    "exact TreeSHAP risk factors. Bearer tokens carry scopes `clinrisk/predict`, `clinrisk/explain` "
    "and `clinrisk/admin` (Cognito in the cloud, `clinrisk token create` locally). Unknown category "
    "values are rejected with 422, never mapped to a default."
)
# Checked into the repository (`make openapi`); tests/integration/test_predict_api.py keeps it in sync.
OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

app = APIGatewayRestResolver(enable_validation=True)
app.configure_openapi(
    title=API_TITLE,
    version=API_VERSION,
    description=API_DESCRIPTION,
    security_schemes={"bearer": HTTPBearer(bearerFormat="JWT")},
    security=[{"bearer": []}],
)
app.enable_swagger(path="/v1/docs", title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION)


@functools.cache
def _serving() -> Serving:
    """Built once per cold start."""
    return build_serving(Settings())


# The scope each protected route needs. Checked before the resolver: its validation runs
# before any route code, and a caller without the scope must not learn what a valid body is.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/v1/predict"): "predict",
    ("GET", "/v1/model"): "predict",
    ("POST", "/v1/explain"): "explain",  # the explain function (lambdas/explain) refuses with this same guard
}


def openapi_json() -> str:
    """The API's OpenAPI 3 document, generated from the route signatures and pydantic models."""
    return app.get_openapi_json_schema() + "\n"


@app.get("/health", security=[])
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/model")
@tracer.capture_method
def get_model() -> ModelInfo:
    return _serving().model_info()


@app.post("/v1/predict")
@tracer.capture_method
def post_predict(request: PredictRequest) -> PredictResponse:
    outcome = _serving().predict(request, request_id=app.current_event.request_context.request_id)
    _record(outcome)
    return outcome.response


def _record(outcome: Outcome) -> None:
    version = str(outcome.response.model_version)
    count = len(outcome.response.predictions)
    metrics.add_dimension(name="model_version", value=version)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="HighRisk", unit=MetricUnit.Count, value=outcome.high_risk)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=outcome.seconds * 1000)
    log: dict[str, Any] = {"model_version": version, "encounters": count, "ms": round(outcome.seconds * 1000, 3)}
    if shadow := outcome.shadow:
        with single_metric(
            name="ShadowHighRisk", unit=MetricUnit.Count, value=shadow.high_risk, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name="model_version", value=str(shadow.version))
        log |= {"shadow_version": shadow.version, "shadow_mean_abs_difference": shadow.mean_absolute_difference}
    logger.info("scored", extra=log)


# --------------------------------------------------------------------------- errors → responses


def _json(status: int, message: str, **extra: Any) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"message": message, **extra})


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _path(location: tuple[Any, ...]) -> str:
    """A pydantic location as a JSON path: ('body', 'encounters', 3, 'age') → $.encounters[3].age."""
    path = "$"
    if location[:1] == ("body",) and len(location) == 2 and isinstance(location[1], int):
        return path  # a JSON syntax error: pydantic locates it by character offset
    for part in location[1:] if location[:1] == ("body",) else location:
        # A key is client-supplied text; only name-like keys are echoed (and logged) as they are.
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if _NAME.fullmatch(str(part)) else ".<key>"
    return path


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[Any]:
    # Only the location, type and message of each problem: pydantic's `input` would echo
    # patient values into logs and responses.
    problems = [{"path": _path(tuple(e["loc"])), "type": e["type"], "message": e["msg"]} for e in error.errors()]
    logger.info("invalid request", extra={"problems": [{"path": p["path"], "type": p["type"]} for p in problems]})
    return _json(422, "the request does not match the API schema", errors=problems)


@app.exception_handler(NoChampionError)
def _no_champion(error: NoChampionError) -> Response[Any]:
    logger.warning("no model to serve", extra={"detail": str(error)})
    return _json(503, f"no model is available to serve: {error}")


@app.exception_handler(EndpointUnavailableError)
def _endpoint_unavailable(error: EndpointUnavailableError) -> Response[Any]:
    logger.warning("model endpoint unavailable", extra={"detail": str(error)})
    return _json(503, "the model endpoint is not available; retry later")


@app.exception_handler(EndpointFailedError)
def _endpoint_failed(error: EndpointFailedError) -> Response[Any]:
    logger.error("model endpoint failed", extra={"detail": str(error)})
    return _json(502, "the model endpoint failed to score the request")


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response[Any]:
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _json(500, "internal error")


# --------------------------------------------------------------------------- entry point


@logger.inject_lambda_context(log_event=False, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _refusal(event) or app.resolve(event, context)


def _refusal(event: dict[str, Any]) -> dict[str, Any] | None:
    """What is refused before the resolver parses anything: an oversized body (413), a token
    without the route's scope (403), a body that is not declared JSON (415; a form-encoded body
    would otherwise be parsed as form fields)."""
    method, path = event.get("httpMethod", ""), event.get("path", "")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if len(event.get("body") or "") > MAX_BODY_BYTES:
        return _proxy_error(413, f"the request body is over the {MAX_BODY_BYTES}-byte limit")
    scope = ROUTE_SCOPES.get((method, path))
    if scope is not None and scope not in granted_scopes(event):
        return _proxy_error(403, f"this route needs the `{scope}` scope")
    if method == "POST" and not headers.get("content-type", "").startswith(content_types.APPLICATION_JSON):
        return _proxy_error(415, "send the body as JSON, with Content-Type: application/json")
    return None


def _proxy_error(status: int, message: str) -> dict[str, Any]:
    body = json.dumps({"message": message})
    return {"statusCode": status, "headers": {"Content-Type": content_types.APPLICATION_JSON}, "body": body}
