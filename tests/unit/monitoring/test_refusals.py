"""Data quality: a request the predict handler refuses (422) is counted, and captured with the field
paths of its problems and none of its values."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
from clinrisk.monitoring.window import read_window
from clinrisk.settings import Settings
from lambdas.predict import handler as predict_handler
from lambdas.predict import routes as predict_routes


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "clinrisk-test")
    predict_routes.serving.cache_clear()
    yield tmp_path
    predict_routes.serving.cache_clear()


def _post(body: dict[str, Any]) -> dict[str, Any]:
    request = HttpRequest(method="POST", path="/v1/predict", query_string=b"",
                          headers=[("content-type", "application/json")], body=json.dumps(body).encode(),
                          source_ip="127.0.0.1", protocol="HTTP/1.1")  # fmt: skip
    rid = str(uuid.uuid4())
    event = proxy_event(
        request, claims={"sub": "t", "scope": "clinrisk/predict"}, request_id=rid, received_at=time.time()
    )
    return predict_handler.handler(event, LocalLambdaContext(aws_request_id=rid, deadline_epoch=time.time() + 30))


def test_a_refused_request_is_captured_by_field_path_without_values(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_age = "[170-180)"
    response = _post({"encounters": [{"encounter_id": 5, "patient_nbr": 6, "age": secret_age}]})
    assert response["statusCode"] == 422
    capture = predict_routes.serving().capture
    assert capture is not None and capture.flush() == 1
    now = datetime.now(UTC)
    rows = read_window(
        Settings().captures_root, task="readmission", start=now - timedelta(hours=1), end=now + timedelta(hours=1)
    ).to_pylist()
    assert [r["kind"] for r in rows] == ["refused"]
    paths = json.loads(rows[0]["refused_paths"])
    assert "$.encounters[].age" in paths and all("[0]" not in p for p in paths)
    assert secret_age not in json.dumps(rows) and "RefusedRequests" in capsys.readouterr().out
