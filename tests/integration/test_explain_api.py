"""The explain Lambda handler, in process, with API Gateway events, a real promoted champion, the
local knowledge index (usearch + wordllama + bm25s) and the similar-patient index built at
promotion; plus the local server routing /v1/explain over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lambdas.explain.handler as explain_handler
import lambdas.explain.routes as explain_routes
import lambdas.predict.handler as predict_handler
import lambdas.predict.routes as predict_routes
from clinrisk.explain.corpus import load_directory
from clinrisk.explain.ingest import sync
from clinrisk.explain.verification import stated_numbers
from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
from clinrisk.runtime import build_knowledge_index
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.model_card import INTENDED_USE
from tests.integration.test_predict_api import _records

pytestmark = pytest.mark.integration
KNOWLEDGE = Path(__file__).resolve().parents[2] / "knowledge"


def call(
    path: str, body: Any, *, scopes: str = "explain", raw: str | None = None, method: str = "POST"
) -> dict[str, Any]:
    payload = raw if raw is not None else json.dumps(body)
    request = HttpRequest(method=method, path=path, query_string=b"", headers=[("content-type", "application/json")],
                          body=payload.encode(), source_ip="127.0.0.1", protocol="HTTP/1.1")  # fmt: skip
    rid = str(uuid.uuid4())
    claims = {"sub": "test", "scope": " ".join(f"clinrisk/{s}" for s in scopes.split())}
    event = proxy_event(request, claims=claims, request_id=rid, received_at=time.time())
    module = explain_handler if path == "/v1/explain" else predict_handler
    response = module.handler(event, LocalLambdaContext(aws_request_id=rid, deadline_epoch=time.time() + 30))
    response["json"] = json.loads(response.get("body") or "null")
    return response


@pytest.fixture
def explaining(home_with_champion: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings = home_with_champion()
    monkeypatch.setenv("CLINRISK_HOME", str(settings.home_dir))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "clinrisk-test")
    sync(load_directory(KNOWLEDGE), build_knowledge_index(settings))
    explain_routes.explaining.cache_clear()
    predict_routes.serving.cache_clear()
    yield settings
    explain_routes.explaining.cache_clear()
    predict_routes.serving.cache_clear()


def test_promotion_built_the_similar_patient_index(explaining: Settings) -> None:
    assert (explaining.explain_root / "similar" / "v1" / "vectors.usearch").is_file()


def test_explain_scores_like_predict_and_cites_what_it_retrieved(explaining: Settings) -> None:
    record = _records(1, seed=5)[0]
    response = call("/v1/explain", {"encounter": record})
    assert response["statusCode"] == 200, response["body"]
    body = response["json"]
    predicted = call("/v1/predict", {"encounters": [record]}, scopes="predict")["json"]["predictions"][0]
    assert body["prediction"]["probability"] == predicted["probability"]
    assert body["prediction"]["factors"][:5] == predicted["factors"]
    assert body["degraded"] is False and body["degraded_reasons"] == []
    assert body["intended_use"] == INTENDED_USE
    assert body["guardrail_action"] == "NOT_APPLIED"
    assert body["models"] | {"embedding": None} == {
        "risk_model": "clinrisk-readmission-30d",
        "risk_model_version": 1,
        "writer": "clinrisk-deterministic-writer-1",
        "embedding": None,
    }
    cited = re.findall(r"\[([^\[\]]+#[^\[\]]+)\]", body["narrative"])
    assert cited and set(cited) == {c["id"] for c in body["citations"]}
    for citation in body["citations"]:
        assert citation["url"].startswith("https://") and citation["source"] and citation["title"]
    similar = body["similar_patients"]
    assert similar["k"] == 50 and similar["model_version"] == 1
    assert similar["rate_ci_low"] <= similar["outcome_rate"] <= similar["rate_ci_high"]
    assert set(similar["distributions"]) == {"age", "discharge_group", "primary_diagnosis_group"}
    allowed = [
        body["prediction"]["probability"],
        similar["outcome_rate"],
        similar["rate_ci_low"],
        similar["rate_ci_high"],
    ]
    for value, tolerance in stated_numbers(body["narrative"]):
        assert any(abs(a - value) <= tolerance + 1e-12 for a in allowed)
    assert body["verification"] == {"dropped_sentences": 0, "reasons": {}}


def test_without_a_similar_patient_index_the_answer_degrades(explaining: Settings) -> None:
    shutil.rmtree(explaining.explain_root / "similar")
    body = call("/v1/explain", {"encounter": _records(1, seed=6)[0]})["json"]
    assert body["degraded"] is True
    assert body["degraded_reasons"] == ["similar-patient search unavailable (IndexUnavailableError)"]
    assert body["similar_patients"] is None
    assert body["citations"] and "similar past encounters" not in body["narrative"]


def test_an_index_that_cannot_be_opened_degrades_instead_of_failing(explaining: Settings) -> None:
    (explaining.explain_root / "knowledge" / "chunks.jsonl").write_text("{not a passage\n")
    response = call("/v1/explain", {"encounter": _records(1, seed=7)[0]})
    assert response["statusCode"] == 200, response["body"]
    body = response["json"]
    assert body["degraded"] is True
    assert body["degraded_reasons"] == ["knowledge retrieval unavailable (IndexUnavailableError)"]
    assert body["citations"] == [] and re.search(r"\[[^\]]*#", body["narrative"]) is None
    assert body["similar_patients"]["k"] == 50
    assert body["narrative"].startswith("The model estimates a")


def test_explain_needs_the_explain_scope(explaining: Settings) -> None:
    response = call("/v1/explain", {"encounter": _records(1)[0]}, scopes="predict")
    assert response["statusCode"] == 403
    assert response["json"] == {"message": "this route needs the `explain` scope"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "TRACE"])
def test_another_method_is_405_naming_post(explaining: Settings, method: str) -> None:
    """Found by schemathesis: TRACE /v1/explain was a 500 (the explain resolver had no not-found mapping)."""
    response = call("/v1/explain", {"encounter": _records(1, seed=5)[0]}, method=method)
    assert response["statusCode"] == 405, response["body"]
    assert response["multiValueHeaders"]["Allow"] == ["POST"]


def test_a_bad_request_gets_422_naming_the_field_without_its_value(explaining: Settings) -> None:
    record = _records(1)[0] | {"age": "[200-210)"}
    response = call("/v1/explain", {"encounter": record})
    assert response["statusCode"] == 422
    assert [e["path"] for e in response["json"]["errors"]] == ["$.encounter.age"]
    assert "[200-210)" not in response["body"]


def test_the_local_server_routes_explain_over_http(explaining: Settings) -> None:
    """`clinrisk serve`'s app (the gateway, tokens, worker processes) answers /v1/explain."""
    from starlette.testclient import TestClient

    from clinrisk.local.api_server import predict_app
    from clinrisk.serving.auth import issue_token

    with TestClient(predict_app()) as client:
        token = issue_token(["explain"], subject="t", ttl_seconds=60)
        response = client.post(
            "/v1/explain", json={"encounter": _records(1)[0]}, headers={"Authorization": f"Bearer {token}"}
        )
        unauthorised = client.post("/v1/explain", json={"encounter": _records(1)[0]})
    assert response.status_code == 200, response.text
    assert response.json()["citations"] and response.json()["similar_patients"]["k"] == 50
    assert unauthorised.status_code == 401
