"""Every refusal of an approval link as a page, in one place: a malformed link 400, a forged or
expired one 403, a task that no longer waits 410, Step Functions unreachable 502."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from pydantic import ValidationError

from clinrisk.registry.approval import ApprovalClosedError, DecisionNotRecordedError, InvalidApprovalLinkError
from lambdas.approval_decision import pages
from lambdas.approval_decision.routes import app, html, logger

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
    return html(status, pages.refused(title, message))
