"""The task routes: `GET /v1/tasks`, and per task `POST /v1/tasks/{task}/predict` and
`GET /v1/tasks/{task}/model` (`POST /v1/tasks/{task}/explain` is the explain function's).

Each task served gets its own routes, registered at cold start from its task file, so that each
`predict` route validates against that task's generated request model and the OpenAPI document
carries one request schema per task. Readmission's routes are `/v1/predict` and `/v1/model` under
their task path (the same functions, its hand-built contract). A task name no route has reaches
the catch-all routes (not in the document): 404 with the tasks that exist, or 503 for a task whose
file does not load or whose contract cannot be built. Such a task is logged (file and keys) and
listed as unavailable; it never stops the cold start of the others.

No `from __future__ import annotations`: Powertools reads the route signatures at run time.
"""

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from clinrisk.runtime import build_task_serving
from clinrisk.serving.prediction import ModelInfo
from clinrisk.serving.task_contract import TaskRequest
from clinrisk.serving.task_contract import request_model as request_model_of
from clinrisk.serving.tasks import (
    ServedTasks,
    TaskOutcome,
    TaskPredictResponse,
    TaskServing,
    TaskSummary,
    served_tasks,
)
from clinrisk.settings import DEFAULT_TASK, Settings
from lambdas.predict import routes
from lambdas.predict.api import app, logger, metrics, tracer
from lambdas.predict.unserved import log_unserved, register_each_task


class TaskList(BaseModel):
    tasks: list[TaskSummary]


_built: list[TaskServing] = []


def task_serving() -> TaskServing:
    """Built once per cold start, beside (and sharing) readmission's serving (rebuilt with it)."""
    readmission = routes.serving()
    if not _built or _built[0].readmission is not readmission:
        _built[:] = [build_task_serving(Settings(), readmission, TASKS, on_endpoints=True)]
    return _built[0]


@app.get("/v1/tasks", tags=["tasks"])
@tracer.capture_method
def get_tasks() -> TaskList:
    """Every task served here, and whether a champion is live for it (its serving pointer, read; no model is loaded)."""
    return TaskList(tasks=task_serving().listing())


def _operation(name: str, verb: str) -> str:
    return f"{verb}_{name.replace('-', '_')}"


def _predict_route(name: str, request_model: type[TaskRequest]) -> Callable[..., TaskPredictResponse]:
    def predict(request: Any) -> TaskPredictResponse:
        request_id = app.current_event.request_context.request_id
        outcome = task_serving().predict(name, request.records, request_id=request_id)
        _record(outcome)
        return outcome.response

    predict.__annotations__ = {"request": request_model, "return": TaskPredictResponse}
    predict.__name__ = _operation(name, "predict")
    predict.__doc__ = f"Score records of task `{name}` with its champion."
    return predict


def _model_route(name: str) -> Callable[[], ModelInfo]:
    def model() -> ModelInfo:
        return task_serving().model_info(name)

    model.__name__ = _operation(name, "model")
    model.__doc__ = f"The model serving task `{name}`."
    return model


def _record(outcome: TaskOutcome) -> None:
    response = outcome.response
    metrics.add_dimension(name="task", value=response.task)
    metrics.add_dimension(name="model_version", value=str(response.model_version))
    metrics.add_metric(name="Predictions", unit="Count", value=len(response.predictions))
    metrics.add_metric(name="HighRisk", unit="Count", value=outcome.high_risk)
    metrics.add_metric(name="Latency", unit="Milliseconds", value=outcome.seconds * 1000)
    logger.info(
        "scored",
        extra={"task": response.task, "model_version": response.model_version,
               "records": len(response.predictions), "ms": round(outcome.seconds * 1000, 3)},
    )  # fmt: skip


def register_task_routes(served: ServedTasks) -> ServedTasks:
    """A predict and a model route for every task served; returns the tasks served, less any whose
    request contract could not be built (unavailable, with the reason)."""
    app.post(f"/v1/tasks/{DEFAULT_TASK}/predict", tags=[DEFAULT_TASK], operation_id="predict_readmission")(
        routes.post_predict
    )
    app.get(f"/v1/tasks/{DEFAULT_TASK}/model", tags=[DEFAULT_TASK], operation_id="model_readmission")(routes.get_model)
    return register_each_task(served, request_model_of, _register, logger)


def _register(name: str, request_model: type[TaskRequest]) -> None:
    app.post(f"/v1/tasks/{name}/predict", tags=[name])(tracer.capture_method(_predict_route(name, request_model)))
    app.get(f"/v1/tasks/{name}/model", tags=[name])(tracer.capture_method(_model_route(name)))


@app.post("/v1/tasks/<task>/predict", include_in_schema=False)
def predict_unknown_task(task: str) -> None:
    raise TASKS.refusal(task)


@app.get("/v1/tasks/<task>/model", include_in_schema=False)
def model_unknown_task(task: str) -> None:
    raise TASKS.refusal(task)


TASKS = register_task_routes(log_unserved(served_tasks(Settings()), logger))
