"""What is refused, or put in canonical form, before the resolver parses anything. It runs ahead
of the resolver, not as a Powertools middleware: the resolver validates the body before any user
middleware runs, and a caller without the route's scope must not learn what a valid body is."""

import base64
import binascii
import json
from email.message import Message
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, content_types

from clinrisk.serving.auth import granted_scopes
from lambdas.predict.contract import invalid_request, mirrored_route

# API Gateway accepts 10 MB; 1,000 encounters are about 1.5 MB of JSON, so anything much
# larger is not a valid request and is refused before it is parsed. Bytes of UTF-8, not characters.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The scope each protected route needs.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/v1/predict"): "predict",
    ("GET", "/v1/model"): "predict",
    ("GET", "/v1/tasks"): "predict",
    ("POST", "/v1/explain"): "explain",  # the explain function (lambdas/explain) runs this same guard
}
# The routes that read a JSON body.
BODY_ROUTES: frozenset[tuple[str, str]] = frozenset({("POST", "/v1/predict"), ("POST", "/v1/explain")})
_IDENTITY = ("", "identity")


class RefusedError(Exception):
    """The request is answered here, with `response` (a Lambda proxy response)."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        payload = json.dumps(body or {"message": message})
        self.response = {"statusCode": status, "headers": {"Content-Type": content_types.APPLICATION_JSON},
                         "body": payload}  # fmt: skip


def admit(event: dict[str, Any]) -> dict[str, Any]:
    """`event` as the resolver may see it, or `RefusedError`: an oversized body (413), a token without the
    route's scope (403), and for a route that reads JSON: a Content-Encoding (415; nothing is
    decompressed), a media type other than application/json (415; a form-encoded body would
    otherwise be parsed as form fields), a body that is not UTF-8 (422). An admitted JSON body
    arrives as text with the canonical Content-Type, whatever case and parameters the client used."""
    method, path = event.get("httpMethod", ""), event.get("path", "")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if _size(event) > MAX_BODY_BYTES:
        raise RefusedError(413, f"the request body is over the {MAX_BODY_BYTES}-byte limit")
    route = mirrored_route(method, path)
    scope = ROUTE_SCOPES.get(route)
    if scope is not None and scope not in granted_scopes(event):
        raise RefusedError(403, f"this route needs the `{scope}` scope")
    if route not in BODY_ROUTES:
        return event
    if headers.get("content-encoding", "").strip().lower() not in _IDENTITY:
        raise RefusedError(415, "send the body uncompressed: no Content-Encoding is accepted")
    if not is_json(headers.get("content-type", "")):
        raise RefusedError(415, "send the body as JSON, with Content-Type: application/json")
    return _with_json_body(event, _text(event))


def _with_json_body(event: dict[str, Any], text: str) -> dict[str, Any]:
    """`event` with `text` as its body and the canonical Content-Type (Powertools matches a prefix)."""
    json_type = content_types.APPLICATION_JSON
    headers, multi = _without_content_type(event.get("headers")), _without_content_type(event.get("multiValueHeaders"))
    return {**event, "body": text, "isBase64Encoded": False, "headers": {**headers, "Content-Type": json_type},
            "multiValueHeaders": {**multi, "Content-Type": [json_type]}}  # fmt: skip


def _without_content_type(headers: dict[str, Any] | None) -> dict[str, Any]:
    return {name: value for name, value in (headers or {}).items() if name.lower() != "content-type"}


def is_json(content_type: str) -> bool:
    """A Content-Type of application/json (any case), with no charset or charset utf-8 (RFC 8259)."""
    message = Message()
    message["content-type"] = content_type
    charset = str(message.get_param("charset") or "utf-8").lower()
    return message.get_content_type() == content_types.APPLICATION_JSON and charset in ("utf-8", "utf8")


def _size(event: dict[str, Any]) -> int:
    """The body's size in bytes (UTF-8 for a text body)."""
    body: str = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    # isascii() is O(1) in CPython; surrogatepass: a proxy event may carry a lone surrogate (\ud800).
    return len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))


def _text(event: dict[str, Any]) -> str:
    """The body as text; a base64 body (the gateway's form for bytes that are not UTF-8) is decoded."""
    body: str = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        problem = {"path": "$", "type": "utf8_invalid", "message": "the body is not UTF-8"}
        raise RefusedError(422, "the body is not UTF-8", invalid_request([problem])) from None


def guarded_resolve(resolver: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What an API function's entry point does (predict and explain): the guard, then the resolver."""
    try:
        admitted = admit(event)
    except RefusedError as refusal:
        return refusal.response
    return resolver.resolve(admitted, context)
