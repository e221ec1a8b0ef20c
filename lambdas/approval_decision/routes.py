"""The approval decision routes: GET shows the confirmation page, POST records the decision."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from clinrisk.adapters.aws import step_functions_client
from clinrisk.registry.approval import (
    ApprovalDecisionSettings,
    DecisionLink,
    load_settings,
    record_decision,
    signing_secret,
    verify,
)
from clinrisk.settings import Settings
from lambdas.approval_decision import pages

SERVICE = "clinrisk-approval-decision"
ROUTE = "/v1/approvals/decision"
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
app = APIGatewayRestResolver()


@functools.cache
def _wiring() -> tuple[bytes, Any]:
    """The signing secret and the Step Functions client, once per cold start."""
    settings = load_settings(ApprovalDecisionSettings)
    return signing_secret(settings.approval_secret_arn), step_functions_client(Settings())


def _link() -> DecisionLink:
    return DecisionLink.model_validate(app.current_event.query_string_parameters or {})


def html(status: int, body: str) -> Response[str]:
    return Response(status_code=status, content_type=content_types.TEXT_HTML, body=body, headers=pages.HEADERS)


@app.get(ROUTE)
def confirm() -> Response[str]:
    link = _link()
    verify(link, secret=_wiring()[0], now=datetime.now(UTC))
    return html(200, pages.confirm(link))


@app.post(ROUTE)
def decide() -> Response[str]:
    secret, step_functions = _wiring()
    decision = record_decision(_link(), step_functions=step_functions, secret=secret, now=datetime.now(UTC))
    logger.info("decision recorded", extra={"decision": decision})
    return html(200, pages.recorded(decision))
