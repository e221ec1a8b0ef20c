"""What is refused before the resolver parses anything. It runs ahead of the resolver, not as a
Powertools middleware: the resolver validates the body before any user middleware runs, and a
caller without the route's scope must not learn what a valid body is."""

import json
from typing import Any

from aws_lambda_powertools.event_handler import content_types

from clinrisk.serving.auth import granted_scopes

# API Gateway accepts 10 MB; 1,000 encounters are about 1.5 MB of JSON, so anything much
# larger is not a valid request and is refused before it is parsed.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The scope each protected route needs.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/v1/predict"): "predict",
    ("GET", "/v1/model"): "predict",
    ("POST", "/v1/explain"): "explain",  # the explain function (lambdas/explain) runs this same guard
}


def refusal(event: dict[str, Any]) -> dict[str, Any] | None:
    """An oversized body (413), a token without the route's scope (403), a body that is not
    declared JSON (415; a form-encoded body would otherwise be parsed as form fields)."""
    method, path = event.get("httpMethod", ""), event.get("path", "")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if len(event.get("body") or "") > MAX_BODY_BYTES:
        return _proxy_error(413, f"the request body is over the {MAX_BODY_BYTES}-byte limit")
    scope = ROUTE_SCOPES.get((method, path))
    if scope is not None and scope not in granted_scopes(event):
        return _proxy_error(403, f"this route needs the `{scope}` scope")
    if method == "POST" and not headers.get("content-type", "").startswith(content_types.APPLICATION_JSON):
        return _proxy_error(415, "send the body as JSON, with Content-Type: application/json")
    return None


def _proxy_error(status: int, message: str) -> dict[str, Any]:
    body = json.dumps({"message": message})
    return {"statusCode": status, "headers": {"Content-Type": content_types.APPLICATION_JSON}, "body": body}
