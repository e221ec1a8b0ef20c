"""The API's contract: the error bodies, every status each route can return, and the OpenAPI
document built from the routes' models with them.

One document for the whole API: predict's routes and the explain function's `POST /v1/explain`
(another Lambda behind the same API Gateway, so its paths are merged in from its own resolver).
Powertools generates the paths and the request and response schemas from the route signatures;
what it cannot know is added here, in one place: the errors the gateway (401, 413, 502, 504), the
guard (403, 413, 415) and the error mapping (422, 502, 503) send, and that `/health` is public.
Its generic 422 (`HTTPValidationError`, FastAPI's shape) is replaced by the one this API sends.
"""

import functools
import json
import re
from typing import Any

from pydantic import BaseModel, Field

from lambdas.predict.api import API_DESCRIPTION, API_TITLE, API_VERSION, app


class ErrorBody(BaseModel):
    """Every error but 422: a message that never quotes the request."""

    message: str


class Problem(BaseModel):
    path: str = Field(description="JSON path of the problem, e.g. `$.encounters[3].age`; `$` for the whole body.")
    type: str = Field(description="pydantic's error type, or `json_invalid`, `json_too_deep`, `duplicate_key`, "
                      "`utf8_invalid`.")  # fmt: skip
    message: str


class InvalidRequestBody(BaseModel):
    """422: the body is not JSON, or does not match the schema. Names locations, never values."""

    message: str
    errors: list[Problem]


PUBLIC: frozenset[tuple[str, str]] = frozenset({("GET", "/health")})
_GATEWAY = {
    401: "No valid bearer token (sent by API Gateway's authorizer; the handler never runs).",
    413: "The body is over the size limit: 4 MiB in UTF-8 bytes (10 MB at API Gateway).",
    502: "The model endpoint failed, or the function failed.",
    503: "No model is available to serve (none promoted, or the endpoint is not ready); retry later.",
    504: "No answer within the integration timeout (29 s).",
}


def _forbidden(scope: str) -> dict[int, str]:
    return {403: f"The token lacks the route's scope (`clinrisk/{scope}`)."}


def _body(shape: str) -> dict[int, str]:
    return {
        400: f"In the cloud only: API Gateway's request validator refused the body (not {shape}).",
        415: "The body is not declared `application/json` (charset utf-8 if any), or has a Content-Encoding.",
        422: "The body is not UTF-8 JSON (invalid, nested too deeply, a duplicate key) or does not match the schema.",
    }


# Every status each route returns besides 200, with its description.
ERROR_STATUSES: dict[tuple[str, str], dict[int, str]] = {
    ("GET", "/health"): {status: _GATEWAY[status] for status in (413, 502, 504)},
    ("GET", "/v1/model"): {**_GATEWAY, **_forbidden("predict")},
    ("POST", "/v1/predict"): {
        **_GATEWAY,
        **_forbidden("predict"),
        **_body(
            "an object whose `encounters` (readmission) or `records` (other tasks) is an array of 1 to 1,000 objects"
        ),
    },
    ("GET", "/v1/tasks"): {status: _GATEWAY[status] for status in (401, 413, 502, 504)} | _forbidden("predict"),
    # Degraded explanations are 200s (`degraded: true`); only a request that cannot be scored is an error.
    ("POST", "/v1/explain"): {**_GATEWAY, **_forbidden("explain"), **_body("an object with an `encounter` object")},
}
# A task's routes (any task name, known or not): /v1/tasks/{task}/predict is /v1/predict's, and so on,
# but a task's 503 also covers a task the deployment has a file for and cannot serve.
_TASK_ROUTE = re.compile(r"/v1/tasks/[^/]+/(predict|model|explain)")
_TASK_UNAVAILABLE = {
    503: "No model is available to serve this task (none promoted, or the endpoint is not ready), or the task is"
    " unavailable: its task file is invalid, and the message names the file and the keys at fault (`GET /v1/tasks`"
    " lists it with `available: false`); retry later.",
}


def route_statuses(method: str, path: str) -> dict[int, str]:
    """Every status the route answers besides 200, with its description: a task's route's are those
    of the route it mirrors, with the task's 503."""
    mirrored = mirrored_route(method, path)
    return ERROR_STATUSES[mirrored] | (_TASK_UNAVAILABLE if mirrored != (method, path) else {})


def mirrored_route(method: str, path: str) -> tuple[str, str]:
    """The route a request's scope, body rules and statuses are those of: a task's route counts as
    the route it mirrors (`POST /v1/tasks/heart-disease/predict` as `POST /v1/predict`)."""
    task_route = _TASK_ROUTE.fullmatch(path)
    return (method, f"/v1/{task_route.group(1)}") if task_route else (method, path)


_REPLACED_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")
_REF = "#/components/schemas/{model}"


def openapi_document(base_path: str = "") -> dict[str, Any]:
    """The OpenAPI document of the API as served under `base_path` ("" locally and on a custom
    domain, "/<stage>" on the default execute-api domain), which is its `servers` entry."""
    document: dict[str, Any] = json.loads(app.get_openapi_json_schema(
        title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION,
    ))  # fmt: skip
    document["servers"] = [{"url": base_path or "/"}]
    explain_paths, explain_schemas = _explain_document()
    document["paths"].update(explain_paths)
    schemas = document["components"]["schemas"]
    schemas.update(explain_schemas)
    for name in _REPLACED_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(_error_schemas())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            key = (method.upper(), path)
            statuses = route_statuses(*key)
            operation["responses"] = {"200": operation["responses"]["200"], **_error_responses(statuses)}
            if key in PUBLIC:
                operation["security"] = []
    return document


@functools.cache
def openapi_json(base_path: str = "") -> str:
    """The document as `docs/openapi.json` holds it (`make openapi`) and `/v1/openapi.json` serves it."""
    return json.dumps(openapi_document(base_path), indent=2) + "\n"


def _explain_document() -> tuple[dict[str, Any], dict[str, Any]]:
    """The explain function's paths and schemas, from its own resolver (imported here, not at module
    level: the predict function answers the document but never explains)."""
    from lambdas.explain.api import app as explain_app
    from lambdas.explain.routes import post_explain

    del post_explain  # imported for its registration on explain_app
    document = json.loads(explain_app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION))
    return document["paths"], document["components"]["schemas"]


def _error_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (ErrorBody, InvalidRequestBody):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _error_responses(statuses: dict[int, str]) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=_body_model(status).__name__)}}},
        }
        for status, description in sorted(statuses.items())
    }


def _body_model(status: int) -> type[BaseModel]:
    return InvalidRequestBody if status == 422 else ErrorBody


def invalid_request(problems: list[dict[str, str]]) -> dict[str, Any]:
    """The 422 body."""
    return InvalidRequestBody(message="the request does not match the API schema", errors=problems).model_dump()
