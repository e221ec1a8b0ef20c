"""`POST /v1/explain`: parse, explain with the ports built once per cold start, record metrics.
Logs carry ids, counts, versions, timings and degradation reasons, never an encounter's values or
the narrative."""

import functools
import time
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from clinrisk.explain.service import Explainer, ExplainRequest, ExplainResponse, explain
from clinrisk.runtime import build_explainer, build_store
from clinrisk.serving.model_holder import ModelHolder
from clinrisk.serving.scoring import Bands
from clinrisk.settings import Settings
from lambdas.explain.api import app, logger, metrics, tracer


@dataclass(frozen=True)
class Explaining:
    holder: ModelHolder
    bands: Bands
    top_factors: int
    explainer: Explainer


@functools.cache
def explaining() -> Explaining:
    """Built once per cold start. The explain function always scores in process (it needs every
    factor's contribution), whatever the serving mode of predict."""
    settings = Settings()
    holder = ModelHolder(build_store(settings), check_seconds=settings.serving.pointer_check_seconds)
    return Explaining(holder, Bands.from_settings(settings), settings.serving.top_factors, build_explainer(settings))


@app.post("/v1/explain")
@tracer.capture_method
def post_explain(request: ExplainRequest) -> ExplainResponse:
    started = time.perf_counter()
    ports = explaining()
    response = explain(
        request,
        deployment=ports.holder.current(),
        bands=ports.bands,
        top_factors=ports.top_factors,
        explainer=ports.explainer,
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
