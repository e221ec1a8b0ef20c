"""Every exception a route can raise, mapped to a response in one place. Responses and logs name
locations, types and counts, never a value from the request."""

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit

from clinrisk.ports import EndpointFailedError, EndpointUnavailableError
from clinrisk.serving.model_holder import NoChampionError
from clinrisk.serving.tasks import TaskUnavailableError, UnknownTaskError
from lambdas.predict import routes
from lambdas.predict.api import app, logger, metrics
from lambdas.predict.contract import invalid_request
from lambdas.predict.json_body import BodyError, key_path


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    body = {"message": message}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def json_path(location: Sequence[Any]) -> str:
    """A pydantic location as a JSON path: ('body', 'encounters', 3, 'age') → $.encounters[3].age."""
    location = tuple(location)
    path = "$"
    if location[:1] == ("body",) and len(location) == 2 and isinstance(location[1], int):
        return path  # a JSON syntax error: pydantic locates it by character offset
    for part in location[1:] if location[:1] == ("body",) else location:
        # A key is client-supplied text; only name-like keys are echoed (and logged) as they are.
        path += f"[{part}]" if isinstance(part, int) else key_path(str(part))
    return path


def register_no_route(resolver: APIGatewayRestResolver) -> None:
    """404 for a path no route of `resolver` has; 405, with the methods it has in `Allow`, for a path
    some route has (without this, the catch-all `Exception` mapping would make both a 500)."""

    @resolver.not_found
    def _no_route(error: NotFoundError) -> Response[Any]:
        event = resolver.current_event
        # The resolver keeps its routes in these two lists (there is no public accessor).
        routes = [*resolver._static_routes, *resolver._dynamic_routes]
        allowed = sorted({route.method for route in routes if route.rule.match(event.path)})
        if allowed:
            return _json(405, f"{event.http_method} is not allowed here", headers={"Allow": ", ".join(allowed)})
        return _json(404, "no such route")


register_no_route(app)


def unprocessable(problems: list[dict[str, str]]) -> Response[Any]:
    logger.info("invalid request", extra={"problems": [{"path": p["path"], "type": p["type"]} for p in problems]})
    return Response(status_code=422, content_type=content_types.APPLICATION_JSON, body=invalid_request(problems))


def body_problems(error: BodyError) -> list[dict[str, str]]:
    return [{"path": error.path, "type": error.kind, "message": error.message}]


def validation_problems(error: RequestValidationError) -> list[dict[str, str]]:
    # Only the location, type and message of each problem: pydantic's `input` would echo
    # patient values into logs and responses.
    return [{"path": json_path(e["loc"]), "type": e["type"], "message": e["msg"]} for e in error.errors()]


@app.exception_handler(BodyError)
def _refused_body(error: BodyError) -> Response[Any]:
    return _refused(body_problems(error))


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[Any]:
    return _refused(validation_problems(error))


def _refused(problems: list[dict[str, str]]) -> Response[Any]:
    """Data quality: a refused request counts in the metrics, and its problem paths (no values) go to capture."""
    metrics.add_metric(name="RefusedRequests", unit=MetricUnit.Count, value=1)
    capture = routes.serving().capture
    if capture is not None:
        capture.refused(request_id=app.current_event.request_context.request_id, paths=[p["path"] for p in problems])
    return unprocessable(problems)


_RETRY_LATER = "the model endpoint is not available; retry later"
# exception → (status, log level, log message, response message; None: the error's own text,
# which names the missing model, never a value).
_MAPPED: dict[type[Exception], tuple[int, str, str, str | None]] = {
    NoChampionError: (503, "warning", "no model to serve", None),
    EndpointUnavailableError: (503, "warning", "model endpoint unavailable", _RETRY_LATER),
    EndpointFailedError: (502, "error", "model endpoint failed", "the model endpoint failed to score the request"),
}


def _mapped(error: Exception) -> Response[Any]:
    status, level, logged, message = next(v for t, v in _MAPPED.items() if isinstance(error, t))
    getattr(logger, level)(logged, extra={"detail": str(error)})
    return _json(status, message or f"no model is available to serve: {error}")


for _error_type in _MAPPED:
    app.exception_handler(_error_type)(_mapped)


@app.exception_handler(UnknownTaskError)
def _unknown_task(error: UnknownTaskError) -> Response[Any]:
    """404 naming the tasks served (the route exists for every task name; the task does not)."""
    logger.info("unknown task")
    return _json(404, str(error))


@app.exception_handler(TaskUnavailableError)
def _unavailable_task(error: TaskUnavailableError) -> Response[Any]:
    """503 naming the task and why (its file's keys at fault, never a value); the cold start logged the problems."""
    logger.warning("task unavailable", extra={"detail": str(error)})
    return _json(503, str(error))


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response[Any]:
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _json(500, "internal error")


def register_error_responses(resolver: APIGatewayRestResolver) -> None:
    """The same mapping on another function's resolver (the explain function): 404 and 405, 422 with
    field paths, 503 without a champion or endpoint, 502, and 500; without predict's data-quality count."""
    register_no_route(resolver)
    resolver.exception_handler(BodyError)(lambda error: unprocessable(body_problems(error)))
    resolver.exception_handler(RequestValidationError)(lambda error: unprocessable(validation_problems(error)))
    for error_type in _MAPPED:
        resolver.exception_handler(error_type)(_mapped)
    resolver.exception_handler(UnknownTaskError)(_unknown_task)
    resolver.exception_handler(TaskUnavailableError)(_unavailable_task)
    resolver.exception_handler(Exception)(_unexpected)
