"""The predict Lambda handler, in process, with API Gateway events and a real promoted model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lambdas.predict.handler as predict_handler
import lambdas.predict.routes as predict_routes
from clinrisk.data.validation import ensure_valid
from clinrisk.model.risk_model import RiskModel
from clinrisk.registry.serving_pointer import read_pointer
from clinrisk.runtime import build_ports
from clinrisk.serving.prediction import MAX_ENCOUNTERS, PredictRequest
from clinrisk.settings import Settings
from tests.conftest import cohort, local_settings
from tests.integration.predict_events import call as _call
from tests.integration.predict_events import records as _records
from tests.integration.predict_events import serve as _serve

pytestmark = pytest.mark.integration

Call = Callable[..., dict[str, Any]]


def test_predict_returns_probability_band_factors_and_version(served: Settings) -> None:
    records = _records(3)
    response = _call("/v1/predict", method="POST", body={"encounters": records})
    assert response["statusCode"] == 200, response["body"]
    body = response["json"]
    assert body["model_version"] == 1
    assert [p["encounter_id"] for p in body["predictions"]] == [r["encounter_id"] for r in records]
    for prediction in body["predictions"]:
        assert 0 < prediction["probability"] < 1
        assert prediction["band"] in {"low", "medium", "high"}
        assert len(prediction["factors"]) == Settings().serving.top_factors
        contributions = [abs(f["contribution"]) for f in prediction["factors"]]
        assert contributions == sorted(contributions, reverse=True)
        for factor in prediction["factors"]:
            assert factor["direction"] == ("increases" if factor["contribution"] > 0 else "decreases")
    assert body["request_id"]


def test_served_probabilities_match_the_xgboost_model_within_1e_6(served: Settings) -> None:
    records = _records(50)
    body = _call("/v1/predict", method="POST", body={"encounters": records})["json"]
    pointer = read_pointer(build_ports(served).store)
    assert pointer is not None
    frame = ensure_valid(cohort(400, 11), require_target=False).drop(columns=["readmitted"]).head(50)
    # Every record is scored with prior_encounters 0 through the API; give the same to xgboost.
    frame = frame.assign(encounter_id=np.arange(len(frame)) + 10_000_000, patient_nbr=np.arange(len(frame)))
    expected = RiskModel.load(served.store_root / pointer.artifact_prefix).predict(frame)
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], expected, rtol=0, atol=1e-6)


def test_bands_follow_the_documented_thresholds(served: Settings) -> None:
    body = _call("/v1/predict", method="POST", body={"encounters": _records(200)})["json"]
    rules = Settings()
    for p in body["predictions"]:
        expected = ("high" if p["probability"] >= rules.operating_threshold
                    else "medium" if p["probability"] >= rules.serving.medium_risk_from else "low")  # fmt: skip
        assert p["band"] == expected


def test_a_batch_scores_each_encounter_as_it_would_be_scored_alone(served: Settings) -> None:
    # 100 encounters span several of the evaluator's row chunks; the answers must not depend on
    # which other encounters share the request.
    records = [{**r, "prior_encounters": i % 4} for i, r in enumerate(_records(100))]
    batch = _call("/v1/predict", method="POST", body={"encounters": records})["json"]["predictions"]
    alone = [_call("/v1/predict", method="POST", body={"encounters": [r]})["json"]["predictions"][0] for r in records]
    assert len(batch) == len(records)
    assert all(len(p["factors"]) == Settings().serving.top_factors for p in batch)
    assert batch == alone


def test_model_route_describes_the_champion(served: Settings) -> None:
    body = _call("/v1/model")["json"]
    assert body["version"] == 1
    assert body["serving_status"] == "current"
    assert "test_roc_auc" in body["metrics"]
    assert body["trained_at"] is not None
    assert "number_inpatient" in body["features"]


def test_health_needs_no_claims(served: Settings) -> None:
    response = _call("/health", scopes=None)
    assert response["statusCode"] == 200
    assert response["json"] == {"status": "ok"}


@pytest.mark.parametrize("scopes", [None, "explain", "admin explain"])
def test_predict_without_the_predict_scope_is_forbidden(served: Settings, scopes: str | None) -> None:
    response = _call("/v1/predict", method="POST", body={"encounters": _records(1)}, scopes=scopes)
    assert response["statusCode"] == 403
    assert "predict" in response["json"]["message"]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """The handler's log lines exactly as Powertools writes them (JSON with every extra key)."""
    formatter = predict_handler.logger.registered_formatter
    return "\n".join(formatter.format(record) for record in caplog.records)


def _with(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**record, **changes}


def _without(record: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != field}


BAD_BODIES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "missing field": (lambda r: {"encounters": [_without(r, "age")]}, "$.encounters[0].age"),
    "wrong type": (
        lambda r: {"encounters": [_with(r, num_lab_procedures="many")]},
        "$.encounters[0].num_lab_procedures",
    ),
    "out of range": (lambda r: {"encounters": [_with(r, time_in_hospital=99)]}, "$.encounters[0].time_in_hospital"),
    "unknown category": (lambda r: {"encounters": [r, _with(r, race="Martian")]}, "$.encounters[1].race"),
    "unknown field": (lambda r: {"encounters": [_with(r, favourite_colour="red")]}, "$.encounters[0].favourite_colour"),
    "empty list": (lambda r: {"encounters": []}, "$.encounters"),
    "too many": (lambda r: {"encounters": [r] * (MAX_ENCOUNTERS + 1)}, "$.encounters"),
    "not a list": (lambda r: {"encounters": r}, "$.encounters"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_get_422_with_the_json_path_of_each_bad_field(
    served: Settings, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    make, path = BAD_BODIES[case]
    response = _call("/v1/predict", method="POST", body=make(_records(1)[0]))
    assert response["statusCode"] == 422, response["body"]
    assert path in [e["path"] for e in response["json"]["errors"]]
    assert all("input" not in e for e in response["json"]["errors"])
    logs = _logged(caplog)
    assert "invalid request" in logs
    assert "Martian" not in logs and '"many"' not in logs


def test_malformed_json_gets_422(served: Settings) -> None:
    response = _call("/v1/predict", method="POST", raw='{"encounters": [')
    assert response["statusCode"] == 422
    assert response["json"]["errors"][0]["type"] == "json_invalid"


def test_a_body_over_the_limit_gets_413_before_parsing(served: Settings) -> None:
    response = _call("/v1/predict", method="POST", raw=" " * (predict_handler.MAX_BODY_BYTES + 1))
    assert response["statusCode"] == 413


def test_logs_never_carry_patient_values(served: Settings, caplog: pytest.LogCaptureFixture) -> None:
    record = _with(_records(1)[0], medical_specialty="Zzyzx-Unique-Specialty", diag_1="428")
    assert _call("/v1/predict", method="POST", body={"encounters": [record]})["statusCode"] == 200
    logs = _logged(caplog)
    assert '"message":"scored"' in logs  # the request was logged...
    assert "Zzyzx" not in logs  # ...without its values


def test_a_parsed_request_prints_as_a_count_without_patient_values() -> None:
    # Powertools formats the parsed body into a debug message on every request.
    request = PredictRequest.model_validate({"encounters": [_with(r, medical_specialty="Zzyzx") for r in _records(3)]})
    assert repr(request) == "PredictRequest(encounters=<3 encounters>)"
    assert "Zzyzx" not in f"{ {'request': request} }"


def test_no_champion_gets_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, local_settings(tmp_path / "empty-home"))
    response = _call("/v1/predict", method="POST", body={"encounters": _records(1)})
    assert response["statusCode"] == 503
    assert "no champion" in response["json"]["message"]
    assert _call("/v1/model")["statusCode"] == 503
    predict_routes.serving.cache_clear()


def test_the_checked_in_openapi_file_matches_the_handler() -> None:
    assert predict_handler.OPENAPI_FILE.read_text() == predict_handler.openapi_json(), "run `make openapi`"
    document = json.loads(predict_handler.openapi_json())
    assert {"/v1/predict", "/v1/model", "/health"} <= set(document["paths"])
    assert "EncounterInput" in json.dumps(document["components"]["schemas"])


def test_the_documented_example_request_scores(served: Settings) -> None:
    example = json.loads((predict_handler.OPENAPI_FILE.parent / "example-request.json").read_text())
    response = _call("/v1/predict", method="POST", body=example)
    assert response["statusCode"] == 200, response["body"]


def test_swagger_ui_is_served_at_v1_docs(served: Settings) -> None:
    response = _call("/v1/docs", scopes=None)
    assert response["statusCode"] == 200
    assert "swagger-ui" in response["body"].lower()
    assert "/v1/predict" in response["body"]  # the spec is embedded in the page


def test_a_body_not_declared_json_gets_415_and_is_never_parsed_or_echoed(
    served: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # curl -d without a Content-Type sends form encoding; parsed as a form, the whole body
    # would become a field name and come back (and be logged) in the error.
    body = json.dumps({"encounters": [_with(_records(1)[0], medical_specialty="Zzyzx-Unique")]})
    response = _call("/v1/predict", method="POST", raw=body, content_type="application/x-www-form-urlencoded")
    assert response["statusCode"] == 415
    assert "Zzyzx" not in response["body"] and "Zzyzx" not in _logged(caplog)


def test_the_scope_is_checked_before_the_body_is_validated(served: Settings) -> None:
    response = _call("/v1/predict", method="POST", raw="{not json", scopes="explain")
    assert response["statusCode"] == 403


def test_client_supplied_keys_that_are_not_names_are_not_echoed(served: Settings) -> None:
    record = {**_records(1)[0], "diabetes since 1998, lives alone": True}
    response = _call("/v1/predict", method="POST", body={"encounters": [record]})
    assert response["statusCode"] == 422
    assert "lives alone" not in response["body"]
    assert "$.encounters[0].<key>" in [e["path"] for e in response["json"]["errors"]]


def test_predictions_emit_emf_metrics_by_model_version(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _call("/v1/predict", method="POST", body={"encounters": _records(3)})["statusCode"] == 200
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(emf) == 1
    metrics = {m["Name"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Predictions", "HighRisk", "Latency"} <= metrics
    assert emf[0]["model_version"] == "1"
    assert emf[0]["Predictions"] in (3, [3], 3.0, [3.0])
