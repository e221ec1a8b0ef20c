"""The local stand-in for API Gateway + a Cognito authorizer in front of a Lambda handler.

In the cloud, a REST API (Lambda proxy integration, payload format 1.0) with a Cognito user-pool
authorizer checks the access token, turns each request into a proxy event with the token's claims
in `requestContext.authorizer.claims`, invokes the Lambda and turns its proxy response back into
HTTP. `create_app` builds an ASGI app that does the same on a laptop, for any handler with the
Lambda signature; `clinrisk serve` runs it with uvicorn around the predict handler.

What it reproduces, because handlers and clients depend on it:
- 401 `{"message": "Unauthorized"}` for a missing or invalid token, before the handler runs;
  public paths (health, docs) skip the authorizer and get no `authorizer` in the event.
- Claims as strings, exactly as the REST authorizer passes them: `scope` unchanged (space-
  separated), `exp` and `iat` in Java's date format ("Fri Jul 29 18:52:53 UTC 2016").
- 413 for a body over the payload limit (10 MB), 502 `Internal server error` when the handler
  raises or returns a malformed response, 504 after the integration timeout (29 s).
- Headers, repeated headers and query keys, base64 bodies in both directions.
Not reproduced: throttling, WAF, CORS preflights, API keys, request validators.

HTTP header names arrive lower-cased (ASGI servers normalise them; API Gateway would keep the
client's spelling), so handlers must read headers case-insensitively, as Powertools does.

Handlers run as in Lambda: each execution environment is a process that imports the handler once
and handles one event at a time; concurrent requests go to different environments. Threads would
be cheaper but are unsafe for Powertools handlers (the resolver keeps the current event in a class
attribute, so one request could read another's event and claims), and a CPU-bound handler would
not use more than one core. uvicorn `--workers N` multiplies the environments. Nothing here logs
a token, a header value or a body: bodies carry patient data.

The access log (logger `clinrisk.local.access`, in place of uvicorn's, which writes raw paths and
query strings) has one line per request: method, route template (`/{proxy+}` for a path no route
has) and status; and for a 401 the reason (missing, malformed, bad signature, expired, ...).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import logging
import multiprocessing
import os
import pickle
import re
import signal
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from multiprocessing.connection import Connection
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from clinrisk.serving.auth import InvalidTokenError, TokenVerifier

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("clinrisk.local.access")

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
"""`handler(event, context) -> proxy response`, the signature of a Python Lambda handler."""

DEFAULT_PUBLIC_PATHS: Final = ("/health", "/v1/docs", "/v1/docs/*", "/v1/openapi.json")
"""Paths served without a token (`fnmatch` patterns; `*` also matches "/")."""
PREDICT_ROUTES: Final = (
    "/health", "/v1/model", "/v1/predict", "/v1/explain", "/v1/docs", "/v1/openapi.json",
    "/v1/tasks", "/v1/tasks/{task}/predict", "/v1/tasks/{task}/model", "/v1/tasks/{task}/explain",
)  # fmt: skip
"""The predict API's route templates, as the access log names them."""
GREEDY_RESOURCE: Final = "/{proxy+}"
MAX_BODY_BYTES: Final = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT_SECONDS: Final = 29.0  # API Gateway's default integration timeout
DEFAULT_ENVIRONMENTS: Final = min(4, os.cpu_count() or 1)
DEFAULT_THREADS: Final = 40

Isolation = Literal["process", "thread"]

STAGE: Final = "local"
LOCAL_ACCOUNT_ID: Final = "000000000000"
LOCAL_API_ID: Final = "clinrisklocal"
LOCAL_REGION: Final = "local"
DEFAULT_FUNCTION_NAME: Final = "clinrisk-predict"
PREDICT_APP_FACTORY: Final = "clinrisk.local.api_server:predict_app"

# Headers that describe the HTTP message, not the content: the server sets them itself.
_HOP_BY_HOP: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_DATE_CLAIMS: Final = frozenset({"exp", "iat"})
_UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": "Bearer", "x-amzn-ErrorType": "UnauthorizedException"}
# requestContext.identity fields that only IAM or Cognito-identity-pool callers have.
_UNSET_IDENTITY: Final = (
    "accessKey",
    "accountId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "user",
    "userArn",
    "clientCert",
)
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class MalformedResponseError(ValueError):
    """The handler's return value is not a valid proxy response. The message names the field only."""


# --------------------------------------------------------------------------- Lambda context


@dataclass(frozen=True)
class LocalLambdaContext:
    """What the Lambda runtime passes as `context`: the attributes Powertools and handlers read."""

    aws_request_id: str
    deadline_epoch: float
    function_name: str = DEFAULT_FUNCTION_NAME
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    identity: None = None
    client_context: None = None

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_epoch - time.time()) * 1000))


# --------------------------------------------------------------------------- request → event


@dataclass(frozen=True)
class HttpRequest:
    """The parts of an HTTP request that go into a proxy event."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes) -> HttpRequest:
        client = scope.get("client")
        return cls(
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]],
            body=body,
            source_ip=client[0] if client else "127.0.0.1",
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
        )


def proxy_event(
    request: HttpRequest, *, claims: Mapping[str, str] | None, request_id: str, received_at: float
) -> dict[str, Any]:
    """The API Gateway REST proxy event (payload format 1.0) for `request`.

    The API is modelled as one greedy resource, `/{proxy+}` (and `/` for the root), so routing
    is the handler's job, as with Powertools' resolvers. `claims` is None on public paths.
    """
    headers, multi_headers = _multi_map(request.headers)
    query, multi_query = _multi_map(parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True))
    body, is_base64 = _event_body(request.body)
    resource = "/" if request.path == "/" else "/{proxy+}"
    context: dict[str, Any] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": (headers or {}).get("host", "localhost"),
        "domainPrefix": LOCAL_API_ID,
        "extendedRequestId": request_id,
        "httpMethod": request.method,
        "identity": _identity(request.source_ip, (headers or {}).get("user-agent")),
        # No stage in the path: the local URL has none, as with a custom domain. So the API's
        # documents name "/" as their server, and Swagger's "Try it out" calls this server.
        "path": request.path,
        "protocol": request.protocol,
        "requestId": request_id,
        "requestTime": datetime.fromtimestamp(received_at, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": int(received_at * 1000),
        "resourceId": "proxy",
        "resourcePath": resource,
        "stage": STAGE,
    }
    if claims is not None:
        context["authorizer"] = {"claims": dict(claims)}
    return {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": None if request.path == "/" else {"proxy": request.path.removeprefix("/")},
        "stageVariables": None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _multi_map(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """API Gateway's two views of repeated keys: the last value, and all values. None when empty."""
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def _event_body(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def _identity(source_ip: str, user_agent: str | None) -> dict[str, str | None]:
    identity: dict[str, str | None] = dict.fromkeys(_UNSET_IDENTITY)
    identity["sourceIp"] = source_ip
    identity["userAgent"] = user_agent
    return identity


def authorizer_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Token claims as the REST API's Cognito authorizer passes them on: every value a string."""
    return {name: _claim_string(name, value) for name, value in claims.items()}


def _claim_string(name: str, value: Any) -> str:
    if name in _DATE_CLAIMS and isinstance(value, int | float) and not isinstance(value, bool):
        return _java_date(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _java_date(epoch_seconds: int) -> str:
    """java.util.Date#toString in UTC, which the authorizer uses for exp and iat; locale-independent."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:02d} {moment:%H:%M:%S} UTC {moment.year}"


# --------------------------------------------------------------------------- proxy response → HTTP


def http_response(result: Any, request_id: str) -> Response:
    """The HTTP response for a Lambda proxy response; raises `MalformedResponseError` like API Gateway's 502.

    `multiValueHeaders` and `headers` are merged; a name in both keeps the multi-value list only.
    Without a Content-Type the response is `application/json`, as with API Gateway.
    """
    if not isinstance(result, Mapping):
        raise MalformedResponseError("the handler did not return an object")
    response = Response(content=_response_body(result), status_code=_status_code(result.get("statusCode")))
    headers = _response_headers(result.get("headers"), result.get("multiValueHeaders"))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    response.raw_headers.extend((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers)
    return response


def _status_code(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        raise MalformedResponseError("statusCode is missing or not an HTTP status")
    return value


def _response_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResponseError("body is not a string")
    if not result.get("isBase64Encoded", False):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise MalformedResponseError("body is marked isBase64Encoded but is not base64") from None


def _response_headers(single: Any, multi: Any) -> list[tuple[str, str]]:
    if not isinstance(single, Mapping | None) or not isinstance(multi, Mapping | None):
        raise MalformedResponseError("headers or multiValueHeaders is not an object")
    merged: list[tuple[str, str]] = []
    for name, values in (multi or {}).items():
        if not isinstance(values, list):
            raise MalformedResponseError("a multiValueHeaders entry is not a list")
        merged.extend((str(name), str(value)) for value in values)
    in_multi = {str(name).lower() for name in (multi or {})}
    merged.extend(
        (str(name), str(value)) for name, value in (single or {}).items() if str(name).lower() not in in_multi
    )
    return [(name, value) for name, value in merged if name.lower() not in _HOP_BY_HOP]


def gateway_error(status: int, message: str, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error API Gateway itself answers with: a JSON `message` and the request id."""
    response = Response(
        content=json.dumps({"message": message}).encode(),
        status_code=status,
        headers={"x-amzn-RequestId": request_id, **(headers or {})},
        media_type="application/json",
    )
    return response


# --------------------------------------------------------------------------- execution environments


class HandlerFailedError(Exception):
    """The handler raised, or its execution environment died. The message is a type name, never a value."""


class _ThreadEnvironments:
    """Invocations in worker threads of the server process: only for thread-safe handlers."""

    def __init__(self, handler: LambdaHandler, concurrency: int) -> None:
        self._handler = handler
        self._concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None  # belongs to the running event loop

    async def start(self) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._concurrency)

    async def stop(self) -> None:
        return None

    async def invoke(self, event: dict[str, Any], context: LocalLambdaContext) -> Any:
        await self.start()
        try:
            # abandon_on_cancel: on timeout the client gets its 504 at once; the thread runs on
            # (a Lambda would be stopped; a thread cannot be).
            return await anyio.to_thread.run_sync(
                self._handler, event, context, abandon_on_cancel=True, limiter=self._limiter
            )
        except Exception as error:
            raise HandlerFailedError(type(error).__name__) from error


class _Environment:
    """One Lambda execution environment: a process that imports the handler once, then runs one
    event at a time, keeping its module state (loaded models, Powertools' globals) between events."""

    def __init__(self, handler: LambdaHandler) -> None:
        # spawn, not fork: forking a process that runs an event loop and threads is unsafe.
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_environment_main, args=(handler, child), name="clinrisk-lambda-environment", daemon=True
        )
        self._process.start()
        child.close()
        self._ready = False

    def wait_ready(self) -> None:
        """Blocks until the handler is imported; EOFError if its import failed (the child printed why)."""
        if not self._ready:
            self._connection.recv()
            self._ready = True

    def invoke(self, event: dict[str, Any], context: LocalLambdaContext) -> Any:
        """Blocking (run it in a thread); EOFError or OSError if the process dies meanwhile."""
        self.wait_ready()
        self._connection.send((event, context))
        status, value = self._connection.recv()
        if status == "error":
            raise HandlerFailedError(value)
        return value

    def kill(self) -> None:
        """Stops the process. A thread still waiting on it then gets EOFError and ends."""
        self._process.kill()
        self._process.join(timeout=5)


def _environment_main(handler: LambdaHandler, connection: Connection) -> None:
    """The loop of an environment process (the Lambda runtime's, in short)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group; the server stops us
    connection.send(("ready", None))
    while True:
        try:
            event, context = connection.recv()
        except EOFError:  # the server has gone
            return
        try:
            outcome: tuple[str, Any] = ("ok", handler(event, context))
        except Exception as error:
            outcome = ("error", type(error).__name__)
        try:
            connection.send(outcome)
        except (pickle.PicklingError, TypeError, AttributeError):
            connection.send(("error", "UnpicklableResponse"))


class _ProcessEnvironments:
    """A fixed set of execution environments; a request waits for an idle one, as with Lambda's
    reserved concurrency. A timed-out or crashed environment is replaced (Lambda stops it too)."""

    def __init__(self, handler: LambdaHandler, count: int) -> None:
        try:
            pickle.dumps(handler)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise TypeError(
                "isolation='process' needs a module-level handler (each environment imports it);"
                " use isolation='thread' for a thread-safe callable"
            ) from error
        self._handler = handler
        self._count = count
        self._environments: list[_Environment] = []
        self._idle: tuple[MemoryObjectSendStream[_Environment], MemoryObjectReceiveStream[_Environment]] | None = None
        self._start_lock: anyio.Lock | None = None

    async def start(self) -> None:
        if self._start_lock is None:  # no await before this line: safe on one event loop
            self._start_lock = anyio.Lock()
        async with self._start_lock:
            if self._idle is None:
                await self._start()

    async def _start(self) -> None:
        environments = [_Environment(self._handler) for _ in range(self._count)]
        self._environments = environments
        try:
            for environment in environments:
                await anyio.to_thread.run_sync(environment.wait_ready)
        except (EOFError, OSError) as error:
            await self.stop()
            raise RuntimeError("a Lambda execution environment failed to import the handler (see above)") from error
        send, receive = anyio.create_memory_object_stream[_Environment](self._count)
        for environment in environments:
            send.send_nowait(environment)
        self._idle = (send, receive)

    async def stop(self) -> None:
        for environment in self._environments:
            environment.kill()
        self._environments = []
        self._idle = None

    async def invoke(self, event: dict[str, Any], context: LocalLambdaContext) -> Any:
        await self.start()
        assert self._idle is not None
        send, receive = self._idle
        environment = await receive.receive()
        try:
            return await anyio.to_thread.run_sync(environment.invoke, event, context, abandon_on_cancel=True)
        except (EOFError, OSError) as error:  # crashed: os._exit, a segfault, the OOM killer
            environment = self._replace(environment)
            raise HandlerFailedError("EnvironmentExited") from error
        except anyio.get_cancelled_exc_class():  # the integration timed out
            environment = self._replace(environment)
            raise
        finally:
            send.send_nowait(environment)

    def _replace(self, environment: _Environment) -> _Environment:
        environment.kill()
        if self._idle is None:  # shutting down: no new process
            return environment
        fresh = _Environment(self._handler)  # a cold start on its next event
        self._environments = [fresh if e is environment else e for e in self._environments]
        return fresh


# --------------------------------------------------------------------------- the ASGI app


class LocalApiGateway:
    """An ASGI app: authorizer, payload limit, proxy event, handler invocation, proxy response.

    isolation="process" (default) runs `max_concurrency` execution environments (default
    `DEFAULT_ENVIRONMENTS`), each a process handling one event at a time, as Lambda does; the
    handler must be a module-level function. isolation="thread" runs up to `max_concurrency`
    (default 40) invocations in threads of the server process, and is only for thread-safe
    handlers: Powertools' resolvers keep the current event in a class attribute, so under threads
    one request can read another's event. `routes` are the templates the access log names
    ("/v1/items/{id}"; "{name+}" spans segments); any other path is logged as "/{proxy+}".
    """

    def __init__(
        self,
        handler: LambdaHandler,
        *,
        verifier: TokenVerifier,
        public_paths: Collection[str] = DEFAULT_PUBLIC_PATHS,
        max_body_bytes: int = MAX_BODY_BYTES,
        isolation: Isolation = "process",
        max_concurrency: int | None = None,
        timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
        function_name: str = DEFAULT_FUNCTION_NAME,
        routes: Collection[str] = (),
    ) -> None:
        self._verifier = verifier
        self._routes = [(template, _template_pattern(template)) for template in routes]
        self._public_paths = tuple(public_paths)
        self._max_body_bytes = max_body_bytes
        self._timeout = timeout_seconds
        self._function_name = function_name
        self._environments: _ThreadEnvironments | _ProcessEnvironments
        if isolation == "process":
            self._environments = _ProcessEnvironments(handler, max_concurrency or DEFAULT_ENVIRONMENTS)
        else:
            self._environments = _ThreadEnvironments(handler, max_concurrency or DEFAULT_THREADS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            response = await self._respond(scope, receive)
            await response(scope, receive, send)
            access_logger.info("%s %s %d", scope["method"], self.route_of(scope["path"]), response.status_code)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    def is_public(self, path: str) -> bool:
        return any(fnmatchcase(path, pattern) for pattern in self._public_paths)

    def route_of(self, path: str) -> str:
        """The route template `path` matches; the greedy resource's name for any other path, which
        is never logged as it came (a path can carry an identifier)."""
        return next((template for template, pattern in self._routes if pattern.fullmatch(path)), GREEDY_RESOURCE)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Starts the execution environments before the first request (warm, and a handler that
        cannot be imported stops the server at once) and stops them on shutdown."""
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._environments.start()
                except RuntimeError as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._environments.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        request_id = str(uuid.uuid4())
        received_at = time.time()
        claims = None
        if not self.is_public(scope["path"]):
            claims = self._authorize(Headers(scope=scope).get("authorization"), request_id)
            if claims is None:
                return gateway_error(401, "Unauthorized", request_id, _UNAUTHORIZED_HEADERS)
        body = await self._read_body(scope, receive)
        if body is None:
            return gateway_error(413, "Request Too Long", request_id)
        request = HttpRequest.from_scope(scope, body)
        event = proxy_event(request, claims=claims, request_id=request_id, received_at=received_at)
        return await self._invoke(event, request_id)

    def _authorize(self, authorization: str | None, request_id: str) -> dict[str, str] | None:
        """The claims of a valid bearer token, or None. Logs why a token was refused, never the token."""
        scheme, _, token = (authorization or "").partition(" ")
        if authorization is None:
            reason = "missing (no Authorization header)"
        elif scheme.lower() != "bearer" or not token.strip():
            reason = "malformed (not `Bearer <token>`)"
        else:
            try:
                return authorizer_claims(self._verifier.verify(token.strip()))
            except InvalidTokenError as error:
                reason = str(error)
        access_logger.info("request %s: 401, token %s", request_id, reason)
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The request body, or None as soon as it is known to exceed the limit."""
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in Request(scope, receive).stream():
                size += len(chunk)
                if size > self._max_body_bytes:
                    return None
                chunks.append(chunk)
        except ClientDisconnect:
            return b""  # nobody is listening; the handler still gets a well-formed event
        return b"".join(chunks)

    async def _invoke(self, event: dict[str, Any], request_id: str) -> Response:
        context = LocalLambdaContext(request_id, time.time() + self._timeout, function_name=self._function_name)
        with anyio.move_on_after(self._timeout) as timer:
            try:
                result = await self._environments.invoke(event, context)
            except HandlerFailedError as error:
                # The type only: a message may quote the request, and requests carry patient data.
                logger.error("request %s: the handler failed: %s", request_id, error)
                logger.debug("request %s: handler traceback", request_id, exc_info=True)
                return gateway_error(502, "Internal server error", request_id)
        if timer.cancelled_caught:
            logger.error("request %s: the handler did not answer within %.0f s", request_id, self._timeout)
            return gateway_error(504, "Endpoint request timed out", request_id)
        try:
            return http_response(result, request_id)
        except MalformedResponseError as error:
            logger.error("request %s: malformed Lambda proxy response: %s", request_id, error)
            return gateway_error(502, "Internal server error", request_id)


create_app = LocalApiGateway
"""The local API Gateway in front of a handler, as an ASGI app for uvicorn (or any ASGI server)."""


def _template_pattern(template: str) -> re.Pattern[str]:
    """A route template as a regular expression: "{id}" is one path segment, "{proxy+}" any rest."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join(
        ("(.+)" if part.endswith("+}") else "([^/]+)") if part.startswith("{") else re.escape(part) for part in parts
    ))  # fmt: skip


# --------------------------------------------------------------------------- the predict API


PREDICT_HANDLER: Final = "lambdas.predict.handler.handler"
"""The predict function's handler, named as its Lambda configuration names it (module.function)."""
EXPLAIN_HANDLER: Final = "lambdas.explain.handler.handler"
# API Gateway's routes to functions other than predict (templates); every other path goes to predict.
ROUTED_PATHS: Final = {"/v1/explain": EXPLAIN_HANDLER, "/v1/tasks/{task}/explain": EXPLAIN_HANDLER}
_ROUTED: Final = [(_template_pattern(template), handler) for template, handler in ROUTED_PATHS.items()]


def load_handler(name: str) -> LambdaHandler:
    """The handler called `name` ('package.module.function'), imported by name as the Lambda
    runtime imports it. The stand-in runs whatever function it is configured with, so this package
    never imports the deployment layer (`lambdas`) that sits above it."""
    module_name, _, attribute = name.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise TypeError(f"{name} is not a function")
    return cast(LambdaHandler, handler)


def api_handler(event: dict[str, Any], context: Any) -> Any:
    """API Gateway's routing between the functions: the explain routes to the explain function, every
    other path to the predict function. Module level, so the handler processes can unpickle it."""
    path = event.get("path", "")
    name = next((handler for pattern, handler in _ROUTED if pattern.fullmatch(path)), PREDICT_HANDLER)
    return load_handler(name)(event, context)


def predict_app() -> LocalApiGateway:
    """The prediction API (the predict and explain functions) behind the gateway, with local tokens.
    A uvicorn factory (`PREDICT_APP_FACTORY`), so that each uvicorn worker builds its own."""
    return create_app(api_handler, verifier=TokenVerifier.from_settings(), routes=PREDICT_ROUTES)


def uvicorn_options(log_level: str = "info") -> dict[str, Any]:
    """uvicorn's settings for the stand-in: no uvicorn access log (it writes raw paths and query
    strings); this module's loggers go where uvicorn's go, at `log_level`."""
    from uvicorn.config import LOGGING_CONFIG

    config = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    config["loggers"]["clinrisk.local"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return {"access_log": False, "log_config": config, "log_level": log_level, "server_header": False, "lifespan": "on"}


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info") -> None:
    """Run the prediction API with uvicorn until interrupted.

    Concurrency is `workers` × `DEFAULT_ENVIRONMENTS` requests; each uvicorn worker is a process
    with its own environments (and its own copy of the model).
    """
    import uvicorn

    uvicorn.run(PREDICT_APP_FACTORY, factory=True, host=host, port=port, workers=workers, **uvicorn_options(log_level))
