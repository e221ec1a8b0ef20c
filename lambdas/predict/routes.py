"""The routes: `GET /health`, `GET /v1/model`, `POST /v1/predict`. Each parses into a
`clinrisk.serving.prediction` model and calls `Serving`; logs carry ids, counts, versions and
timings, never an encounter's values."""

import functools
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from clinrisk.runtime import build_serving
from clinrisk.serving.prediction import ModelInfo, Outcome, PredictRequest, PredictResponse, Serving
from clinrisk.settings import Settings
from lambdas.predict.api import NAMESPACE, app, logger, metrics, tracer
from lambdas.predict.contract import openapi_json


@functools.cache
def serving() -> Serving:
    """Built once per cold start."""
    return build_serving(Settings())


@app.get("/health", security=[])
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/openapi.json", include_in_schema=False)
def get_openapi() -> Response[str]:
    return Response(200, content_types.APPLICATION_JSON, openapi_json(_base_path()))


@app.get("/v1/docs", include_in_schema=False)
def get_docs() -> Response[str]:
    """Swagger UI with the document embedded, its own script and styles inline (no CDN)."""
    spec = openapi_json(_base_path()).replace("</", "<\\/")  # the JSON sits in a <script> element
    js, css = _swagger_assets()
    return Response(200, content_types.TEXT_HTML, swagger_ui.generate_swagger_html(spec, js, css, "", None))


@functools.cache
def _swagger_assets() -> tuple[str, str]:
    folder = Path(swagger_ui.__file__).parent
    return (folder / "swagger-ui-bundle.min.js").read_text(), (folder / "swagger-ui.min.css").read_text()


def _base_path() -> str:
    """ "/<stage>" when the request came by the default execute-api domain (its path starts with the
    stage); "" on a custom domain and locally. Swagger's "Try it out" calls the API under it."""
    context = app.current_event.request_context
    stage = context.stage
    return f"/{stage}" if stage and stage != "$default" and context.path.startswith(f"/{stage}/") else ""


@app.get("/v1/model")
@tracer.capture_method
def get_model() -> ModelInfo:
    return serving().model_info()


@app.post("/v1/predict")
@tracer.capture_method
def post_predict(request: PredictRequest) -> PredictResponse:
    outcome = serving().predict(request, request_id=app.current_event.request_context.request_id)
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
