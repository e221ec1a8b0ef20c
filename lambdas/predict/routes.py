"""The routes: `GET /health`, `GET /v1/model`, `POST /v1/predict`. Each parses into a
`clinrisk.serving.prediction` model and calls `Serving`; logs carry ids, counts, versions and
timings, never an encounter's values."""

import functools
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from clinrisk.runtime import build_serving
from clinrisk.serving.prediction import ModelInfo, Outcome, PredictRequest, PredictResponse, Serving
from clinrisk.settings import Settings
from lambdas.predict.api import NAMESPACE, app, logger, metrics, tracer


@functools.cache
def serving() -> Serving:
    """Built once per cold start."""
    return build_serving(Settings())


@app.get("/health", security=[])
def health() -> dict[str, str]:
    return {"status": "ok"}


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
