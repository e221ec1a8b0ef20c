"""The predict API holds to its contract for a client's mistakes (issue 11): the right 4xx, never a
500, no traceback at ERROR, strict types, and an OpenAPI document that says what the code does."""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import pytest
from openapi_spec_validator import validate

import lambdas.predict.handler as predict_handler
from clinrisk.settings import Settings
from tests.integration.predict_events import call, records

pytestmark = pytest.mark.integration

ROUTES = {"/health": "GET", "/v1/model": "GET", "/v1/predict": "POST"}


def no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A client's mistake is not an error of the service: nothing at ERROR, no traceback."""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]


def predict(raw: str | bytes, **options: Any) -> dict[str, Any]:
    return call("/v1/predict", method="POST", raw=raw, **options)


def body_of(*encounters: dict[str, Any]) -> str:
    return json.dumps({"encounters": list(encounters)})


def problems(response: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["path"], e["type"]) for e in response["json"]["errors"]]


# --------------------------------------------------------------------------- routes and methods


@pytest.mark.parametrize("path", ["/v1/unknown", "/v1/predict/extra", "/v2/predict", "/"])
def test_an_unknown_route_gets_404(served: Settings, path: str, caplog: pytest.LogCaptureFixture) -> None:
    response = call(path)
    assert response["statusCode"] == 404, response["body"]
    assert response["json"] == {"message": "no such route"}
    no_error_logged(caplog)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
@pytest.mark.parametrize("path", list(ROUTES))
def test_a_method_a_route_does_not_have_gets_405_with_allow(
    served: Settings, path: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    if method == ROUTES[path]:
        return
    response = call(path, method=method, raw="{}")
    assert response["statusCode"] == 405, response["body"]
    assert response["multiValueHeaders"]["Allow"] == [ROUTES[path]]
    no_error_logged(caplog)


def test_the_openapi_document_is_served_without_a_token(served: Settings) -> None:
    response = call("/v1/openapi.json", scopes=None)
    assert response["statusCode"] == 200, response["body"]
    assert response["body"] == predict_handler.OPENAPI_FILE.read_text()


# --------------------------------------------------------------------------- bodies


def test_a_body_that_is_not_utf8_gets_422(served: Settings, caplog: pytest.LogCaptureFixture) -> None:
    text = json.dumps({"encounters": [{**records(1)[0], "medical_specialty": "Médecine"}]}, ensure_ascii=False)
    latin1 = text.encode("latin-1")
    for raw in (latin1, b'{"encounters": [\xff\xfe]}'):
        response = predict(raw)
        assert response["statusCode"] == 422, response["body"]
        assert problems(response) == [("$", "utf8_invalid")]
    no_error_logged(caplog)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP"])
def test_a_content_encoding_gets_415(served: Settings, encoding: str, caplog: pytest.LogCaptureFixture) -> None:
    raw = gzip.compress(body_of(records(1)[0]).encode())
    response = predict(raw, headers={"content-encoding": encoding})
    assert response["statusCode"] == 415, response["body"]
    assert "Content-Encoding" in response["json"]["message"]
    no_error_logged(caplog)


def test_identity_content_encoding_is_accepted(served: Settings) -> None:
    assert predict(body_of(records(1)[0]), headers={"content-encoding": "identity"})["statusCode"] == 200


@pytest.mark.parametrize("depth", [990, 5000, 100_000])
def test_deeply_nested_json_gets_422_not_a_recursion_error(
    served: Settings, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    response = predict('{"encounters": ' + "[" * depth + "]" * depth + "}")
    assert response["statusCode"] == 422, response["body"][:500]
    # How deep the parser goes depends on the stack in use; past it, json_too_deep. Either way a 422.
    kinds = {kind for _, kind in problems(response)}
    assert kinds == {"json_too_deep"} if depth > 1000 else kinds <= {"json_too_deep", "model_attributes_type"}
    no_error_logged(caplog)


def test_a_duplicate_key_gets_422_with_its_path(served: Settings) -> None:
    record = records(1)[0]
    fields = json.dumps(record)[1:-1]
    raw = '{"encounters": [' + json.dumps(record) + ", {" + fields + ', "time_in_hospital": 3}]}'
    response = predict(raw)
    assert response["statusCode"] == 422, response["body"]
    assert problems(response) == [("$.encounters[1].time_in_hospital", "duplicate_key")]


def test_an_invalid_list_followed_by_a_valid_one_is_refused(served: Settings) -> None:
    raw = '{"encounters": "nonsense", "encounters": ' + json.dumps(records(1)) + "}"
    response = predict(raw)
    assert response["statusCode"] == 422, response["body"]
    assert problems(response) == [("$.encounters", "duplicate_key")]


def test_a_duplicate_key_that_is_not_a_name_is_not_echoed(served: Settings) -> None:
    response = predict('{"lives alone": 1, "lives alone": 2}')
    assert problems(response) == [("$.<key>", "duplicate_key")]
    assert "lives alone" not in response["body"]


def test_the_size_limit_counts_bytes(served: Settings) -> None:
    euros = "€" * (predict_handler.MAX_BODY_BYTES // 3 + 1)  # fewer characters than the limit, 3 bytes each
    assert len(euros) < predict_handler.MAX_BODY_BYTES < len(euros.encode())
    raw = json.dumps({"encounters": [{**records(1)[0], "medical_specialty": euros}]}, ensure_ascii=False)
    response = predict(raw)
    assert response["statusCode"] == 413, response["body"][:500]


# --------------------------------------------------------------------------- Content-Type


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON", "application/json; charset=utf-8", "APPLICATION/JSON;charset=UTF-8"],
)
def test_json_media_types_are_accepted_in_any_case_and_with_parameters(served: Settings, content_type: str) -> None:
    response = predict(body_of(records(1)[0]), content_type=content_type)
    assert response["statusCode"] == 200, response["body"]


@pytest.mark.parametrize(
    "content_type",
    ["application/jsonZZ", "application/json-seq", "text/plain", "application/json; charset=latin-1", ""],
)
def test_other_media_types_get_415(served: Settings, content_type: str) -> None:
    response = predict(body_of(records(1)[0]), content_type=content_type)
    assert response["statusCode"] == 415, response["body"]


# --------------------------------------------------------------------------- strict types


LENIENT: dict[str, tuple[str, Any]] = {
    "true for an integer": ("time_in_hospital", True),
    "a string for an integer": ("time_in_hospital", "9"),
    "a fraction for an integer": ("time_in_hospital", 9.5),
    "false for the prior count": ("prior_encounters", False),
    "a string for a code": ("admission_type_id", "1"),
    "true for a code": ("admission_type_id", True),
    "a string for an id": ("encounter_id", "12"),
    "an id over 2**53 - 1": ("encounter_id", 2**53),
    "a number for a category": ("max_glu_serum", 1),
    "a number for text": ("medical_specialty", 7),
}


@pytest.mark.parametrize("case", list(LENIENT))
def test_a_value_of_another_json_type_gets_422(served: Settings, case: str) -> None:
    field, value = LENIENT[case]
    response = predict(body_of({**records(1)[0], field: value}))
    assert response["statusCode"] == 422, response["body"]
    assert [path for path, _ in problems(response)] == [f"$.encounters[0].{field}"]


def test_a_number_without_a_fraction_is_the_integer_json_schema_says_it_is(served: Settings) -> None:
    # JSON Schema counts 9.0 as an integer, so the document cannot refuse it; the API takes it as 9.
    record = {**records(1)[0], "time_in_hospital": 9, "admission_type_id": 1, "prior_encounters": 2}
    as_floats = {**record, "time_in_hospital": 9.0, "admission_type_id": 1.0, "prior_encounters": 2.0}
    answers = [predict(body_of(r)) for r in (record, as_floats)]
    assert [a["statusCode"] for a in answers] == [200, 200], answers[1]["body"]
    assert answers[0]["json"]["predictions"] == answers[1]["json"]["predictions"]


def test_only_documented_field_names_are_accepted(served: Settings) -> None:
    record = records(1)[0]
    renamed = {("glyburide_metformin" if k == "glyburide-metformin" else k): v for k, v in record.items()}
    response = predict(body_of(renamed))
    assert response["statusCode"] == 422, response["body"]
    assert ("$.encounters[0].glyburide-metformin", "missing") in problems(response)
    assert ("$.encounters[0].glyburide_metformin", "extra_forbidden") in problems(response)


# --------------------------------------------------------------------------- the OpenAPI document


def document() -> dict[str, Any]:
    return json.loads(predict_handler.OPENAPI_FILE.read_text())


def test_the_document_is_valid_openapi() -> None:
    validate(document())


def test_every_status_a_route_returns_is_documented_with_its_body() -> None:
    paths = document()["paths"]
    routes = {**ROUTES, "/v1/explain": "POST"}  # the explain function's, in the same document
    statuses = {path: set(paths[path][method.lower()]["responses"]) for path, method in routes.items()}
    body_route = {"200", "400", "401", "403", "413", "415", "422", "502", "503", "504"}
    assert statuses == {
        "/health": {"200", "413", "502", "504"},
        "/v1/model": {"200", "401", "403", "413", "502", "503", "504"},
        "/v1/predict": body_route,
        "/v1/explain": body_route,
    }
    # Each task's routes are documented as the routes they mirror (/v1/tasks/{task}/predict as /v1/predict).
    task_paths = {path for path in paths if path.startswith("/v1/tasks/")}
    assert set(paths) - task_paths == {*routes, "/v1/tasks"}
    assert {path.split("/")[3] for path in task_paths} >= {"readmission", "heart-disease"}
    for path in task_paths:
        [(method, operation)] = paths[path].items()
        mirrored = "/v1/" + path.rsplit("/", 1)[1]
        assert (method.upper(), set(operation["responses"])) == (routes[mirrored], statuses[mirrored]), path
    explain = paths["/v1/explain"]["post"]
    assert explain["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExplainRequest")
    assert "clinrisk/explain" in explain["responses"]["403"]["description"]
    invalid = paths["/v1/predict"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    schema = document()["components"]["schemas"][invalid["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"message", "errors"}
    problem = schema["properties"]["errors"]["items"]
    problem = document()["components"]["schemas"][problem["$ref"].rsplit("/", 1)[1]] if "$ref" in problem else problem
    assert set(problem["properties"]) == {"path", "type", "message"}
    assert "HTTPValidationError" not in document()["components"]["schemas"]


def test_health_is_public_and_the_other_routes_need_a_token() -> None:
    paths = document()["paths"]
    assert paths["/health"]["get"]["security"] == []
    assert document()["security"] == [{"bearer": []}]
    assert "security" not in paths["/v1/predict"]["post"] and "security" not in paths["/v1/model"]["get"]
    assert "security" not in paths["/v1/explain"]["post"]


def test_swagger_ui_sends_try_it_out_to_the_server_it_came_from(served: Settings) -> None:
    page = call("/v1/docs", scopes=None)["body"]
    assert '"servers": [\n    {\n      "url": "/"' in page or '"url":"/"' in page.replace(" ", "").replace("\n", "")
    assert "/local" not in page
    assert document()["servers"] == [{"url": "/"}]


def test_integers_are_documented_as_strict() -> None:
    encounter = document()["components"]["schemas"]["EncounterInput"]
    assert encounter["properties"]["time_in_hospital"]["type"] == "integer"
    assert "`9.0`, which JSON Schema counts as the integer 9" in document()["info"]["description"]
    assert encounter["properties"]["encounter_id"]["maximum"] == 2**53 - 1


def test_a_task_route_documents_that_an_unavailable_task_answers_503() -> None:
    """A task whose file does not load answers 503 on its routes (its name, file and keys at fault),
    and `GET /v1/tasks` lists it unavailable: each task route's 503 says so; the old routes, which
    are readmission's packaged task, keep theirs."""
    paths = document()["paths"]
    task_routes = [(path, method) for path in paths if path.startswith("/v1/tasks/") for method in paths[path]]
    assert task_routes
    for path, method in task_routes:
        description = paths[path][method]["responses"]["503"]["description"]
        assert "unavailable" in description and "task file" in description and "`available: false`" in description
    for path, method in (("/v1/predict", "post"), ("/v1/model", "get"), ("/v1/explain", "post")):
        assert "task file" not in paths[path][method]["responses"]["503"]["description"], path
