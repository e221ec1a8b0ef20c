"""Human approval of a promotion: e-mailed approve/reject links that answer a Step Functions task.

The state machine's approval state waits on a task token. The request side e-mails two links
carrying that token, the decision and an expiry, signed with HMAC-SHA256 under a secret only
the approval Lambdas hold, so a link cannot be forged or turned from reject into approve. The
decision side checks the signature and the expiry, then calls SendTaskSuccess (approve) or
SendTaskFailure (reject). A link past its expiry is refused; the state's own timeout then ends
the wait without promoting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, Field

from clinrisk.errors import ClinriskError
from clinrisk.ports import Notifier

Decision = Literal["approve", "reject"]
REJECTED_ERROR = "ApprovalRejected"  # the state machine catches this name: no promotion


class InvalidApprovalLinkError(ClinriskError):
    """The link's signature does not match, or it has expired."""


class ApprovalRequest(BaseModel):
    """The approval state's payload: its task token and what the approver needs to decide."""

    task_token: str = Field(min_length=1, max_length=1024)
    run_id: str
    model_version: int = Field(ge=1)
    champion_before: int | None = None
    metrics: dict[str, float | None] = {}
    gate_reasons: list[str] = []


class DecisionLink(BaseModel):
    """The query parameters of an approve or reject link."""

    token: str = Field(min_length=1, max_length=1024)
    decision: Decision
    expires: int = Field(description="Unix seconds after which the link is refused.")
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")


def _signature(secret: bytes, token: str, decision: str, expires: int) -> str:
    message = json.dumps([token, decision, expires]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def decision_link(base_url: str, token: str, decision: Decision, *, secret: bytes, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    query = {"token": token, "decision": decision, "expires": expires,
             "signature": _signature(secret, token, decision, expires)}  # fmt: skip
    return f"{base_url.rstrip('/')}?{urlencode(query)}"


def verify(link: DecisionLink, *, secret: bytes, now: datetime) -> None:
    expected = _signature(secret, link.token, link.decision, link.expires)
    if not hmac.compare_digest(expected, link.signature):
        raise InvalidApprovalLinkError("the link's signature does not match; use the link from the e-mail as sent")
    if now.timestamp() > link.expires:
        raise InvalidApprovalLinkError("the link has expired; the run was not promoted")


def request_approval(
    request: ApprovalRequest, *, notifier: Notifier, base_url: str, secret: bytes, valid_for: timedelta, now: datetime
) -> None:
    """E-mail the approvers the candidate's figures and the two signed links."""
    expires_at = now + valid_for
    links = {d: decision_link(base_url, request.task_token, d, secret=secret, expires_at=expires_at)
             for d in ("approve", "reject")}  # fmt: skip
    notifier.publish(
        f"clinrisk: approve promoting v{request.model_version}?",
        {
            "run_id": request.run_id,
            "model_version": request.model_version,
            "champion_before": request.champion_before,
            "metrics": request.metrics,
            "gate_reasons": request.gate_reasons,
            "approve": links["approve"],
            "reject": links["reject"],
            "expires_at": expires_at.astimezone(UTC).isoformat(),
        },
    )


def record_decision(link: DecisionLink, *, step_functions: Any, secret: bytes, now: datetime) -> Decision:
    """Answer the waiting task. `step_functions` is a boto3 Step Functions client."""
    verify(link, secret=secret, now=now)
    if link.decision == "approve":
        step_functions.send_task_success(taskToken=link.token, output=json.dumps({"approved": True}))
    else:
        step_functions.send_task_failure(
            taskToken=link.token, error=REJECTED_ERROR, cause="an approver rejected the promotion"
        )
    return link.decision
