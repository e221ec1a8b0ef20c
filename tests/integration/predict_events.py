"""The predict Lambda handler called in process with the proxy events the local API Gateway makes."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

import lambdas.predict.handler as predict_handler
import lambdas.predict.routes as predict_routes
from clinrisk.data.validation import ensure_valid
from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
from clinrisk.settings import Settings
from tests.conftest import cohort


def records(rows: int = 20, seed: int = 11) -> list[dict[str, Any]]:
    """Valid encounters of the synthetic cohort, as JSON objects."""
    frame = ensure_valid(cohort(400, seed), require_target=False).drop(columns=["readmitted"]).head(rows)
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
            for r in json.loads(frame.to_json(orient="records"))]  # fmt: skip


def call(path: str, *, method: str = "GET", body: Any = None, raw: str | bytes | None = None,
         scopes: str | None = "predict", request_id: str | None = None, content_type: str = "application/json",
         headers: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The handler's proxy response, with `json` added: the parsed body, or None."""
    payload = raw if raw is not None else json.dumps(body) if body is not None else ""
    request = HttpRequest(method=method, path=path, query_string=b"",
                          headers=[("content-type", content_type), *(headers or {}).items()],
                          body=payload if isinstance(payload, bytes) else payload.encode(),
                          source_ip="127.0.0.1", protocol="HTTP/1.1")  # fmt: skip
    claims = None if scopes is None else {"sub": "test", "scope": " ".join(f"clinrisk/{s}" for s in scopes.split())}
    rid = request_id or str(uuid.uuid4())
    event = proxy_event(request, claims=claims, request_id=rid, received_at=time.time())
    response = predict_handler.handler(event, LocalLambdaContext(aws_request_id=rid, deadline_epoch=time.time() + 30))
    text = response.get("body") or ""
    response["json"] = json.loads(text) if text.lstrip().startswith(("{", "[")) else None
    return response


def serve(monkeypatch: pytest.MonkeyPatch, settings: Settings, check_seconds: float = 30) -> None:
    """Point the handler's process at `settings`' home."""
    monkeypatch.setenv("CLINRISK_HOME", str(settings.home_dir))
    monkeypatch.setenv("CLINRISK_SERVING__POINTER_CHECK_SECONDS", str(check_seconds))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "clinrisk-test")
    predict_routes.serving.cache_clear()
