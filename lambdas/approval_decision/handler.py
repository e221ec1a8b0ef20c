"""The approval decision endpoint: `GET|POST /v1/approvals/decision?token=&decision=&expires=&signature=`.

API Gateway (REST, no authorizer: the HMAC signature is the authorization) sends the links from
the approval e-mail here. GET checks the link and shows a confirmation page, with no side effect;
POST (its button) checks the link again and answers the waiting task: SendTaskSuccess to
approve, SendTaskFailure with error `ApprovalRejected` to reject. Errors become pages in one
place (`errors.py`): a malformed link 400, a forged or expired one 403, a task that no longer waits
410, Step Functions unreachable 502. The token is never logged.

Environment: `CLINRISK_APPROVAL_SECRET_ARN` (`clinrisk.registry.approval.ApprovalDecisionSettings`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.approval_decision import errors
from lambdas.approval_decision.routes import app, logger, tracer

__all__ = ["errors", "handler"]  # importing the error pages registers them on the resolver


@logger.inject_lambda_context(log_event=False, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
