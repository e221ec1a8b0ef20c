"""The local API Gateway: a real uvicorn server on an ephemeral port, a real HTTP client, and a
small Powertools REST resolver (`echo`, below) as the Lambda handler. The resolver answers with
the event and context it received, so the tests can compare them with what API Gateway sends.

The handler runs in separate execution-environment processes (the server's default), which
import this module; it records each invocation's request id in the file named by CALLS_ENV so
the tests can tell whether it ran.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from clinrisk.local.api_server import (
    LocalApiGateway,
    LocalLambdaContext,
    MalformedResponseError,
    create_app,
    http_response,
)
from clinrisk.serving.auth import TokenVerifier, create_token, granted_scopes

pytestmark = pytest.mark.integration

KEY = b"integration-test-signing-key-32b"
CALLS_ENV = "CLINRISK_TEST_API_CALLS"
BODY_LIMIT = 64 * 1024
BINARY = bytes(range(256)) * 4  # not UTF-8
ENVIRONMENTS = 8

# --------------------------------------------------------------------------- the handler (scaffolding)

echo = APIGatewayRestResolver()
echo.enable_swagger(path="/v1/docs", title="echo", version="1")


@echo.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "has_authorizer": "authorizer" in echo.current_event.raw_event["requestContext"]}


@echo.route("/v1/echo", method=["GET", "POST", "PUT"])
def echo_event() -> dict[str, Any]:
    context = echo.lambda_context
    return {
        "event": echo.current_event.raw_event,
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "scopes": sorted(granted_scopes(echo.current_event.raw_event)),
    }


@echo.get("/v1/custom")
def custom() -> Response[str]:
    return Response(418, "text/plain", "short and stout", headers={"X-Custom": "yes", "Set-Cookie": ["a=1", "b=2"]})


@echo.get("/v1/binary")
def binary() -> Response[bytes]:
    return Response(200, "application/octet-stream", BINARY)


@echo.get("/v1/slow")
def slow() -> dict[str, Any]:
    number, began = echo.current_event.get_query_string_value("n"), time.time()
    time.sleep(0.2)
    # Read the event again after the pause: under shared threads another request's event could be here.
    return {"n": number, "n_after": echo.current_event.get_query_string_value("n"), "pid": os.getpid(),
            "began": began, "ended": time.time()}  # fmt: skip


@echo.get("/v1/fail")
def fail() -> dict[str, Any]:
    raise RuntimeError("patient 4711 has value 13.2")


@echo.get("/v1/crash")
def crash() -> dict[str, Any]:
    os._exit(3)


HANG_SECONDS = 600  # far beyond any gateway timeout a test sets: its environment is killed first


@echo.get("/v1/hang")
def hang() -> dict[str, Any]:
    time.sleep(HANG_SECONDS)
    return {}


def echo_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    calls = os.environ.get(CALLS_ENV)
    if calls:
        with Path(calls).open("a") as stream:
            stream.write(event["requestContext"]["requestId"] + "\n")
    return echo.resolve(event, context)


def sleeping_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Thread-safe: keeps no state."""
    began = time.time()
    time.sleep(0.2)
    return {"statusCode": 200, "body": json.dumps({"path": event["path"], "began": began, "ended": time.time()})}


def most_at_once(bodies: list[dict[str, Any]]) -> int:
    """The largest number of handler runs in progress at one moment (from their own clocks):
    concurrency shown by overlap, not by a timing threshold."""
    edges = sorted([(b["began"], 1) for b in bodies] + [(b["ended"], -1) for b in bodies], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


# --------------------------------------------------------------------------- fixtures


@contextmanager
def running(app: LocalApiGateway) -> Iterator[str]:
    """`app` served by uvicorn in a background thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server took too long to start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def calls_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("calls") / "calls.txt"
    path.touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CALLS_ENV, str(path))  # inherited by the environment processes
        yield path


@pytest.fixture(scope="module")
def base_url(calls_file: Path) -> Iterator[str]:
    app = create_app(echo_handler, verifier=TokenVerifier(KEY), max_body_bytes=BODY_LIMIT, max_concurrency=ENVIRONMENTS)
    with running(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def calls(calls_file: Path) -> int:
    return len(calls_file.read_text().splitlines())


def bearer(*scopes: str, **token_options: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(KEY, scopes or ('predict',), **token_options)}"}


# --------------------------------------------------------------------------- the event


def test_the_event_has_the_shape_api_gateway_sends(client: httpx.Client) -> None:
    headers = [*bearer("predict", "explain", subject="ehr-app").items(), ("X-Multi", "1"), ("X-Multi", "2")]
    before = time.time()
    response = client.post(
        "/v1/echo", params=[("single", "1"), ("multi", "a"), ("multi", "b")], headers=headers, json={"age": 70}
    )
    assert response.status_code == 200
    event, context = response.json()["event"], response.json()["context"]

    assert set(event) == {
        "resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
        "multiValueQueryStringParameters", "pathParameters", "stageVariables", "requestContext", "body",
        "isBase64Encoded",
    }  # fmt: skip
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/v1/echo"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"proxy": "v1/echo"}
    assert event["stageVariables"] is None
    assert json.loads(event["body"]) == {"age": 70}
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"single": "1", "multi": "b"}
    assert event["multiValueQueryStringParameters"] == {"single": ["1"], "multi": ["a", "b"]}
    assert event["headers"]["x-multi"] == "2"
    assert event["multiValueHeaders"]["x-multi"] == ["1", "2"]
    assert event["headers"]["content-type"] == "application/json"

    request_context = event["requestContext"]
    assert request_context["stage"] == "local"
    assert request_context["path"] == "/v1/echo"  # no stage in the local URL, as on a custom domain
    assert request_context["resourcePath"] == "/{proxy+}"
    assert request_context["httpMethod"] == "POST"
    assert request_context["protocol"] == "HTTP/1.1"
    assert request_context["identity"]["sourceIp"] == "127.0.0.1"
    assert request_context["accountId"]
    assert request_context["apiId"]
    assert uuid.UUID(request_context["requestId"]).version == 4
    assert before * 1000 - 1000 <= request_context["requestTimeEpoch"] <= time.time() * 1000
    assert response.headers["x-amzn-requestid"] == request_context["requestId"]

    assert context["aws_request_id"] == request_context["requestId"]
    assert context["function_name"] == "clinrisk-predict"
    assert context["memory_limit_in_mb"] > 0
    assert context["invoked_function_arn"].startswith("arn:aws:lambda:")
    assert 0 < context["remaining_ms"] <= 29_000


def test_claims_arrive_as_strings_where_the_authorizer_puts_them(client: httpx.Client) -> None:
    response = client.get("/v1/echo", headers=bearer("predict", "explain", subject="ehr-app"))
    claims = response.json()["event"]["requestContext"]["authorizer"]["claims"]
    assert all(isinstance(value, str) for value in claims.values())
    assert claims["scope"] == "clinrisk/predict clinrisk/explain"
    assert claims["sub"] == "ehr-app"
    assert claims["token_use"] == "access"
    assert claims["exp"].endswith(
        f"UTC {time.gmtime().tm_year}"
    )  # "Fri Jul 29 18:52:53 UTC 2016", as the REST authorizer
    assert response.json()["scopes"] == ["explain", "predict"]


def test_absent_query_headers_and_body_are_none(client: httpx.Client) -> None:
    event = client.get("/v1/echo", headers=bearer()).json()["event"]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def test_a_body_that_is_not_utf8_arrives_base64_encoded(client: httpx.Client) -> None:
    event = client.put("/v1/echo", headers=bearer(), content=BINARY).json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == BINARY


# --------------------------------------------------------------------------- the authorizer


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-jwt",
        f"Bearer {create_token(b'another-key-of-thirty-two-bytes!', ['predict'])}",
        f"Bearer {create_token(KEY, ['predict'], now=int(time.time()) - 7200, ttl_seconds=60)}",
        f"Bearer {create_token(KEY, ['predict'], issuer='https://cognito-idp.example.com/pool')}",
    ],
    ids=["missing", "not-bearer", "empty", "malformed", "bad-signature", "expired", "wrong-issuer"],
)
def test_without_a_valid_token_the_answer_is_401_and_the_handler_never_runs(
    authorization: str | None, client: httpx.Client, calls_file: Path
) -> None:
    before = calls(calls_file)
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post("/v1/echo", headers=headers, json={"age": 70})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert calls(calls_file) == before


def test_health_and_docs_need_no_token(client: httpx.Client, calls_file: Path) -> None:
    before = calls(calls_file)
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "has_authorizer": False}
    docs = client.get("/v1/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert calls(calls_file) == before + 2


def test_a_token_on_a_public_path_is_ignored_like_api_gateway(client: httpx.Client) -> None:
    assert client.get("/health", headers={"Authorization": "Bearer junk"}).json()["has_authorizer"] is False


# --------------------------------------------------------------------------- payload limit


def test_a_body_over_the_limit_gets_413_and_the_handler_never_runs(client: httpx.Client, calls_file: Path) -> None:
    before = calls(calls_file)
    declared = client.post("/v1/echo", headers=bearer(), content=b"x" * (BODY_LIMIT + 1))
    streamed = client.post("/v1/echo", headers=bearer(), content=iter([b"x" * 1024] * 65 + [b"x"]))  # chunked
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {"message": "Request Too Long"}
    assert calls(calls_file) == before
    assert client.post("/v1/echo", headers=bearer(), content=b"x" * BODY_LIMIT).status_code == 200


# --------------------------------------------------------------------------- the response


def test_status_and_headers_come_back_as_the_handler_set_them(client: httpx.Client) -> None:
    response = client.get("/v1/custom", headers=bearer())
    assert response.status_code == 418
    assert response.text == "short and stout"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-custom"] == "yes"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_a_base64_response_body_is_decoded(client: httpx.Client) -> None:
    response = client.get("/v1/binary", headers=bearer())
    assert response.status_code == 200
    assert response.content == BINARY


def test_a_failing_handler_gets_502_and_its_message_is_not_logged(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="clinrisk.local.api_server"):
        response = client.get("/v1/fail", headers=bearer())
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert "RuntimeError" in caplog.text
    assert "4711" not in caplog.text


def test_malformed_proxy_responses_are_refused() -> None:
    for result in ({"body": "x"}, {"statusCode": 200, "body": b"x"}, {"statusCode": 200, "headers": [1]}, None):
        with pytest.raises(MalformedResponseError):
            http_response(result, "r")
    merged = http_response(
        {"statusCode": "201", "headers": {"A": "single", "B": "b"}, "multiValueHeaders": {"a": ["1", "2"]}}, "r"
    )
    assert merged.status_code == 201
    assert [value for name, value in merged.raw_headers if name == b"a"] == [b"1", b"2"]
    assert (b"content-type", b"application/json") in merged.raw_headers  # API Gateway's default


# --------------------------------------------------------------------------- concurrency and isolation


async def _get_all(base_url: str, paths: list[str], headers: dict[str, str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await asyncio.gather(*(client.get(path, headers=headers) for path in paths))


def test_32_concurrent_requests_run_in_parallel_environments_without_mixing(base_url: str) -> None:
    responses = asyncio.run(_get_all(base_url, [f"/v1/slow?n={n}" for n in range(32)], bearer()))
    assert [response.status_code for response in responses] == [200] * 32
    bodies = [response.json() for response in responses]
    assert [(body["n"], body["n_after"]) for body in bodies] == [(str(n), str(n)) for n in range(32)]
    assert len({body["pid"] for body in bodies}) > 1
    assert most_at_once(bodies) > 1


def test_thread_isolation_runs_thread_safe_handlers_concurrently() -> None:
    app = create_app(sleeping_handler, verifier=TokenVerifier(KEY), isolation="thread")
    with running(app) as url:
        responses = asyncio.run(_get_all(url, [f"/v1/n{n}" for n in range(32)], bearer()))
    bodies = [response.json() for response in responses]
    assert [body["path"] for body in bodies] == [f"/v1/n{n}" for n in range(32)]
    assert most_at_once(bodies) > 1


def test_process_isolation_needs_an_importable_handler() -> None:
    with pytest.raises(TypeError, match="module-level"):
        create_app(lambda event, context: {}, verifier=TokenVerifier(KEY))


def test_a_crashed_or_timed_out_environment_is_replaced(calls_file: Path) -> None:
    # The gateway's timeout also covers a replacement environment's cold start (spawn and import,
    # several seconds on a loaded machine): it must be long enough for that and short against the hang.
    app = create_app(echo_handler, verifier=TokenVerifier(KEY), max_concurrency=1, timeout_seconds=20)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        crashed = client.get("/v1/crash", headers=bearer())
        assert crashed.status_code == 502
        assert crashed.json() == {"message": "Internal server error"}
        assert client.get("/v1/echo", headers=bearer()).status_code == 200
        # The handler sleeps HANG_SECONDS; a 504 (not its 200) shows the gateway's timeout cut it off.
        timed_out = client.get("/v1/hang", headers=bearer())
        assert timed_out.status_code == 504
        assert timed_out.json() == {"message": "Endpoint request timed out"}
        assert client.get("/v1/echo", headers=bearer()).status_code == 200


def test_the_context_reports_the_time_left() -> None:
    context = LocalLambdaContext("id", time.time() + 5)
    assert 4000 < context.get_remaining_time_in_millis() <= 5000
    assert LocalLambdaContext("id", time.time() - 1).get_remaining_time_in_millis() == 0
