"""The prediction API fuzzed from the OpenAPI document it serves (schemathesis, every check on),
on the real local server, with a valid token and with a token that lacks the scope; and the
server's access log, which names routes and statuses and why a token was refused, nothing else.

`make fuzz-api` is the long run: CLINRISK_FUZZ_EXAMPLES per operation, a random seed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from clinrisk.serving.auth import create_token, load_signing_key, signing_key_path
from tests.conftest import local_settings
from tests.integration.live_api import LiveApi

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CLINRISK_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("CLINRISK_FUZZ_SEED", "11")  # fixed in `make test`; "random" in the long run
_ACCESS = re.compile(r"^INFO: +([A-Z]+) (\S+) (\d{3})$")


def schemathesis(api: LiveApi, token: str, report: Path, examples: int, options: Sequence[str] = ()) -> dict[str, Any]:
    """One schemathesis run with every check (and `options`, such as operations to leave out); its JSON
    report, with the statuses the server logged."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{api.url}/v1/openapi.json",
        "--checks", "all", "--header", f"Authorization: Bearer {token}", "--max-examples", str(examples),
        "--report", "json", "--report-json-path", str(report), "--workers", "1",
        *(["--seed", SEED] if SEED != "random" else []), *options,
    ]  # fmt: skip
    mark = len(api.log)
    # cwd: schemathesis keeps a cache folder (.schemathesis/) in its working directory.
    run = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False, cwd=report.parent)
    print(run.stdout[-3000:])
    result: dict[str, Any] = json.loads(report.read_text())
    result["statuses"] = Counter(f"{m[1]} {m[2]} {m[3]}" for line in api.log_since(mark) if (m := _ACCESS.match(line)))
    print(json.dumps({k: result[k] for k in ("seed", "running_time", "operations", "test_cases", "statuses")}))
    assert run.returncode == 0, run.stdout[-5000:]
    return result


def assert_clean(api: LiveApi, result: dict[str, Any], *, operations: int = 8) -> None:
    """No failure, no 5xx in the server's own log, and each status it logged for a documented
    operation documented for that operation."""
    assert result["failures"] == [] and result["errors"] == []
    assert result["test_cases"]["with_failures"] == 0 and result["test_cases"]["errored"] == 0
    assert result["operations"]["tested"] == operations
    assert not [s for s in result["statuses"] if int(s.rsplit(" ", 1)[1]) >= 500], result["statuses"]
    paths = httpx.get(f"{api.url}/v1/openapi.json", timeout=30).json()["paths"]
    for logged in result["statuses"]:
        method, route, status = logged.split(" ")
        operation = paths.get(route, {}).get(method.lower())
        assert operation is None or status in operation["responses"], logged


def test_schemathesis_with_a_valid_token(live_api: LiveApi, tmp_path: Path) -> None:
    result = schemathesis(live_api, live_api.token("predict"), tmp_path / "report.json", EXAMPLES)
    assert_clean(live_api, result)
    assert result["test_cases"]["generated"] >= 100
    statuses = result["statuses"]
    # The fuzzer got through: scored bodies, refused bodies, and every wrong method.
    assert statuses["POST /v1/predict 200"] > 0 and statuses["POST /v1/predict 422"] > 0
    assert statuses["GET /v1/model 200"] > 0 and statuses["DELETE /v1/predict 405"] > 0
    # A predict token never gets an explanation.
    assert {s.rsplit(" ", 1)[1] for s in statuses if s.startswith("POST /v1/explain")} <= {"401", "403"}


def test_schemathesis_with_an_explain_token(live_api: LiveApi, tmp_path: Path) -> None:
    """`/v1/explain` answers this token (explanations, and 422s for bad bodies); predict's routes refuse it."""
    result = schemathesis(live_api, live_api.token("explain"), tmp_path / "report.json", EXAMPLES)
    assert_clean(live_api, result)
    statuses = result["statuses"]
    assert statuses["POST /v1/explain 200"] > 0 and statuses["POST /v1/explain 422"] > 0
    protected = {s: n for s, n in statuses.items() if s.startswith(("POST /v1/predict", "GET /v1/model"))}
    # Never an answer, whatever the body: 403, or 401 when the fuzzer drops the token.
    assert {s.rsplit(" ", 1)[1] for s in protected} <= {"401", "403"}, protected
    assert statuses["POST /v1/predict 403"] > 0


# --------------------------------------------------------------------------- the access log


def test_the_access_log_names_method_route_and_status_never_the_raw_path(live_api: LiveApi) -> None:
    headers = {"Authorization": f"Bearer {live_api.token('predict')}"}
    mark = len(live_api.log)
    with httpx.Client(base_url=live_api.url, headers=headers, timeout=30) as client:
        assert client.get("/health?patient=Zzyzx&mrn=4711").status_code == 200
        assert client.get("/v1/model?mrn=4711").status_code == 200
        assert client.get("/v1/predict?patient=Zzyzx").status_code == 405
        assert client.get("/v1/patients/4711/Zzyzx").status_code == 404
        assert client.post("/v1/predict", content=b'{"encounters": []}').status_code == 415
    lines = live_api.log_since(mark)
    assert [line for line in lines if _ACCESS.match(line)] == [
        "INFO:     GET /health 200",
        "INFO:     GET /v1/model 200",
        "INFO:     GET /v1/predict 405",
        "INFO:     GET /{proxy+} 404",
        "INFO:     POST /v1/predict 415",
    ]
    assert not [line for line in lines if "4711" in line or "Zzyzx" in line or "?" in line], lines


def test_the_log_says_why_a_token_was_refused_never_the_token(live_api: LiveApi) -> None:
    key = load_signing_key(signing_key_path(local_settings(live_api.home)))
    claims = jwt.decode(create_token(key, ["predict"]), options={"verify_signature": False})
    tokens = {
        "malformed": "not-a-jwt",
        "bad signature": create_token(b"k" * 32, ["predict"]),
        "expired": create_token(key, ["predict"], now=1_000_000_000, ttl_seconds=60),
        "wrong audience": jwt.encode({**claims, "aud": "another-app"}, key, algorithm="HS256"),
    }
    mark = len(live_api.log)
    with httpx.Client(base_url=live_api.url, timeout=30) as client:
        assert client.get("/v1/model").status_code == 401
        assert client.get("/v1/model", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
        for token in tokens.values():
            assert client.get("/v1/model", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    refusals = [line for line in live_api.log_since(mark) if ": 401, token " in line]
    reasons = [line.split(": 401, token ", 1)[1] for line in refusals]
    assert len(reasons) == 6, refusals
    assert reasons[0].startswith("missing") and reasons[1].startswith("malformed")
    for reason, expected in zip(reasons[2:], tokens, strict=True):
        assert reason.startswith(expected), (reason, expected)
    logged = "\n".join(live_api.log)
    assert not [part for token in tokens.values() for part in token.split(".") if len(part) > 8 and part in logged]
    assert "dXNlcjpwYXNz" not in logged
