"""Every exception a route can raise, mapped to a response in one place. Responses and logs name
locations, types and counts, never a value from the request."""

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from clinrisk.ports import EndpointFailedError, EndpointUnavailableError
from clinrisk.serving.model_holder import NoChampionError
from lambdas.predict.api import app, logger
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


@app.not_found
def _no_route(error: NotFoundError) -> Response[Any]:
    """404 for a path no route has; 405, with the methods it has in `Allow`, for a path some route has."""
    event = app.current_event
    allowed = sorted({route.method for route in _routes() if route.rule.match(event.path)})
    if allowed:
        return _json(405, f"{event.http_method} is not allowed here", headers={"Allow": ", ".join(allowed)})
    return _json(404, "no such route")


def _routes() -> list[Any]:
    # The resolver keeps its routes in these two lists (there is no public accessor).
    return [*app._static_routes, *app._dynamic_routes]


def _invalid(problems: list[dict[str, str]]) -> Response[Any]:
    logger.info("invalid request", extra={"problems": [{"path": p["path"], "type": p["type"]} for p in problems]})
    return Response(status_code=422, content_type=content_types.APPLICATION_JSON, body=invalid_request(problems))


@app.exception_handler(BodyError)
def _refused_body(error: BodyError) -> Response[Any]:
    return _invalid([{"path": error.path, "type": error.kind, "message": error.message}])


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[Any]:
    # Only the location, type and message of each problem: pydantic's `input` would echo
    # patient values into logs and responses.
    return _invalid([{"path": json_path(e["loc"]), "type": e["type"], "message": e["msg"]} for e in error.errors()])


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


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response[Any]:
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _json(500, "internal error")
