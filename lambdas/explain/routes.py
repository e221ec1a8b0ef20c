"""`POST /v1/explain` (and `/v1/tasks/{task}/explain`): parse, explain with the ports built once per
cold start, record metrics.
Logs carry ids, counts, versions, timings and degradation reasons, never an encounter's values or
the narrative."""

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from clinrisk.explain.service import Explainer, ExplainRequest, ExplainResponse, explain
from clinrisk.explain.task_explain import TaskExplainResponse, explain_task
from clinrisk.runtime import build_explainer, build_serving, build_store, build_task_serving
from clinrisk.serving.model_holder import ModelHolder
from clinrisk.serving.scoring import Bands
from clinrisk.serving.task_contract import TaskExplainRequest, explain_request_model
from clinrisk.serving.tasks import ServedTasks, TaskServing, served_tasks
from clinrisk.settings import DEFAULT_TASK, Settings
from lambdas.explain.api import app, logger, metrics, tracer
from lambdas.predict.unserved import log_unserved, register_each_task


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


# --------------------------------------------------------------------------- per task

_tasks: list[TaskServing] = []


def task_serving() -> TaskServing:
    """The explain function's own followers of each task's champion, built once per cold start."""
    if not _tasks:
        settings = Settings()
        _tasks.append(build_task_serving(settings, build_serving(settings), TASKS))
    return _tasks[0]


def _explain_route(name: str, request_model: type[TaskExplainRequest]) -> Callable[..., TaskExplainResponse]:
    def explain_one(request: Any) -> TaskExplainResponse:
        request_id = app.current_event.request_context.request_id
        response = explain_task(task_serving(), name, request, explainer=explaining().explainer, request_id=request_id)
        metrics.add_dimension(name="task", value=name)
        metrics.add_metric(name="Explanations", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="DegradedExplanations", unit=MetricUnit.Count, value=int(response.degraded))
        logger.info("explained", extra={"task": name, "model_version": response.prediction.model_version,
                                        "writer": response.models.writer, "citations": len(response.citations),
                                        "degraded_reasons": response.degraded_reasons,
                                        "dropped": response.verification.reasons})  # fmt: skip
        return response

    explain_one.__annotations__ = {"request": request_model, "return": TaskExplainResponse}
    explain_one.__name__ = f"explain_{name.replace('-', '_')}"
    return explain_one


def register_task_routes(served: ServedTasks) -> ServedTasks:
    """`POST /v1/tasks/{task}/explain` for every task: readmission's is `/v1/explain`; any other
    task's is explained by the same service with the task's corpus and similar-patient index. A task
    whose contract cannot be built is taken out of service (503), as in the predict function."""
    app.post(f"/v1/tasks/{DEFAULT_TASK}/explain", operation_id="explain_readmission")(post_explain)
    return register_each_task(served, explain_request_model, _register, logger)


def _register(name: str, request_model: type[TaskExplainRequest]) -> None:
    app.post(f"/v1/tasks/{name}/explain")(tracer.capture_method(_explain_route(name, request_model)))


TASKS = register_task_routes(log_unserved(served_tasks(Settings()), logger))


@app.post("/v1/tasks/<task>/explain", include_in_schema=False)
def explain_unknown_task(task: str) -> None:
    raise TASKS.refusal(task)
