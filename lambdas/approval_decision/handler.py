"""The approval decision endpoint: `GET|POST /v1/approvals/decision?token=&decision=&expires=&signature=`.

API Gateway (REST, no authorizer: the HMAC signature is the authorization) sends the links from
the approval e-mail here. GET checks the link and shows a confirmation page, with no side effect;
POST (its button) checks the link again and answers the waiting task: SendTaskSuccess to
approve, SendTaskFailure with error `ApprovalRejected` to reject. Errors become pages in one
place (`_refuse`): a malformed link 400, a forged or expired one 403, a task that no longer waits
410, Step Functions unreachable 502. The token is never logged.

Environment: `CLINRISK_APPROVAL_SECRET_ARN` (`clinrisk.approval.ApprovalDecisionSettings`).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from clinrisk.adapters.aws import step_functions_client
from clinrisk.approval import (
    ApprovalClosedError,
    ApprovalDecisionSettings,
    DecisionLink,
    DecisionNotRecordedError,
    InvalidApprovalLinkError,
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


def _html(status: int, body: str) -> Response[str]:
    return Response(status_code=status, content_type=content_types.TEXT_HTML, body=body, headers=pages.HEADERS)


@app.get(ROUTE)
def confirm() -> Response[str]:
    link = _link()
    verify(link, secret=_wiring()[0], now=datetime.now(UTC))
    return _html(200, pages.confirm(link))


@app.post(ROUTE)
def decide() -> Response[str]:
    secret, step_functions = _wiring()
    decision = record_decision(_link(), step_functions=step_functions, secret=secret, now=datetime.now(UTC))
    logger.info("decision recorded", extra={"decision": decision})
    return _html(200, pages.recorded(decision))


_REFUSALS: dict[type[Exception], tuple[int, str]] = {
    ValidationError: (400, "This is not a complete approval link"),
    InvalidApprovalLinkError: (403, "This link cannot be used"),
    ApprovalClosedError: (410, "This approval request is closed"),
    DecisionNotRecordedError: (502, "The decision was not recorded"),
}


@app.exception_handler(list(_REFUSALS))
def _refuse(error: Exception) -> Response[str]:
    status, title = next(refusal for kind, refusal in _REFUSALS.items() if isinstance(error, kind))
    if isinstance(error, ValidationError):
        # Name the parameters only: the values are the link's, token included.
        fields = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
        message = f"Invalid or missing parameter(s): {', '.join(fields)}. Open the link exactly as e-mailed."
    else:
        message = str(error)
    logger.warning("approval link refused", extra={"status": status, "error": type(error).__name__})
    return _html(status, pages.refused(title, message))


@logger.inject_lambda_context(log_event=False, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
