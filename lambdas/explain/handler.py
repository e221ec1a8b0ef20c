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

import functools
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.explain.service import Explainer, ExplainRequest, ExplainResponse, explain
from clinrisk.model_holder import ModelHolder, NoChampionError
from clinrisk.runtime import build_explainer, build_store
from clinrisk.scoring import Bands
from clinrisk.settings import Settings
from lambdas.predict.handler import _invalid_request, _no_champion, _refusal, _unexpected

SERVICE = "clinrisk-explain"

warnings.filterwarnings("ignore", message="No application metrics to publish")
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "clinrisk"))
app = APIGatewayRestResolver(enable_validation=True)


@dataclass(frozen=True)
class Explaining:
    holder: ModelHolder
    bands: Bands
    top_factors: int
    explainer: Explainer


@functools.cache
def _explaining() -> Explaining:
    """Built once per cold start. The explain function always scores in process (it needs every
    factor's contribution), whatever the serving mode of predict."""
    settings = Settings()
    holder = ModelHolder(build_store(settings), check_seconds=settings.serving.pointer_check_seconds)
    return Explaining(holder, Bands.from_settings(settings), settings.serving.top_factors, build_explainer(settings))


@app.post("/v1/explain")
@tracer.capture_method
def post_explain(request: ExplainRequest) -> ExplainResponse:
    started = time.perf_counter()
    explaining = _explaining()
    response = explain(
        request,
        deployment=explaining.holder.current(),
        bands=explaining.bands,
        top_factors=explaining.top_factors,
        explainer=explaining.explainer,
        request_id=app.current_event.request_context.request_id,
    )
    _record(response, time.perf_counter() - started)
    return response


def _record(response: ExplainResponse, seconds: float) -> None:
    metrics.add_dimension(name="model_version", value=str(response.models.risk_model_version))
    metrics.add_metric(name="Explanations", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="DegradedExplanations", unit=MetricUnit.Count, value=int(response.degraded))
    metrics.add_metric(name="DroppedSentences", unit=MetricUnit.Count, value=response.verification.dropped_sentences)
    metrics.add_metric(name="ExplainLatency", unit=MetricUnit.Milliseconds, value=seconds * 1000)
    logger.info(
        "explained",
        extra={
            "model_version": response.models.risk_model_version,
            "writer": response.models.writer,
            "citations": len(response.citations),
            "degraded_reasons": response.degraded_reasons,
            "dropped": response.verification.reasons,
            "guardrail_action": response.guardrail_action,
            "ms": round(seconds * 1000, 3),
        },
    )


# --------------------------------------------------------------------------- errors → responses

# The same mapping as predict: 422 with field paths (never values), 503 without a champion, 500.
app.exception_handler(RequestValidationError)(_invalid_request)
app.exception_handler(NoChampionError)(_no_champion)
app.exception_handler(Exception)(_unexpected)


# --------------------------------------------------------------------------- entry point


@logger.inject_lambda_context(log_event=False, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _refusal(event) or app.resolve(event, context)
