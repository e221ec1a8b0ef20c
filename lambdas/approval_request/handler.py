"""The RequestApproval state (`lambda:invoke.waitForTaskToken`): e-mail the approvers the
candidate's figures and two signed links, approve and reject, that carry the task token.

Event: `clinrisk.registry.approval.ApprovalRequest` (the state's Payload). The state machine waits for
the decision endpoint (`lambdas/approval_decision`) to answer the token, not for this result.
Errors: `BadEventError` for an event that does not fit; `ConfigurationError` for a missing
setting or a short secret; `NotificationError` when SNS refuses. Each is caught by the state and
notified, and nothing is promoted. The token is never logged.

Environment: `CLINRISK_APPROVALS_TOPIC_ARN`, `CLINRISK_APPROVAL_SECRET_ARN`,
and `CLINRISK_APPROVAL_BASE_URL` or `CLINRISK_APPROVAL_BASE_URL_PARAMETER` (the SSM parameter the
Serving stack writes the API's URL to; `clinrisk.registry.approval.ApprovalRequestSettings`).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.adapters.aws import SnsNotifier
from clinrisk.registry.approval import (
    ApprovalRequest,
    ApprovalRequestSettings,
    decision_endpoint,
    load_settings,
    request_approval,
    signing_secret,
)
from lambdas.common import metrics, stage_handler

# The API's URL changes only when the Serving stack is replaced; re-read it every few minutes.
API_URL_MAX_AGE_SECONDS = 300


@functools.cache
def _wiring() -> tuple[ApprovalRequestSettings, SnsNotifier]:
    """Settings and the SNS client, built once per cold start."""
    settings = load_settings(ApprovalRequestSettings)
    return settings, SnsNotifier(settings.approvals_topic_arn)


def _read_parameter(name: str) -> str:
    from aws_lambda_powertools.utilities.parameters import get_parameter

    return str(get_parameter(name, max_age=API_URL_MAX_AGE_SECONDS))


@stage_handler(ApprovalRequest)
def handler(request: ApprovalRequest, context: LambdaContext) -> dict[str, Any]:
    settings, notifier = _wiring()
    secret = signing_secret(settings.approval_secret_arn)
    valid_for = timedelta(seconds=request.link_valid_seconds)
    base_url = decision_endpoint(settings, read_parameter=_read_parameter)
    request_approval(request, notifier=notifier, base_url=base_url, secret=secret,
                     valid_for=valid_for, now=datetime.now(UTC))  # fmt: skip
    metrics.add_metric(name="ApprovalRequests", unit=MetricUnit.Count, value=1)
    return {"requested": True, "model_version": request.model_version}
