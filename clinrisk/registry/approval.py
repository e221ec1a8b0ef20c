"""Human approval of a promotion: e-mailed approve/reject links that answer a Step Functions task.

The state machine's RequestApproval state waits on a task token. The request side
(`lambdas/approval_request`) e-mails two links carrying that token, the decision and an expiry,
signed with HMAC-SHA256 under a secret only the approval Lambdas hold, so a link cannot be
forged or turned from reject into approve. The decision side (`lambdas/approval_decision`)
checks the signature and the expiry, then calls SendTaskSuccess (approve) or SendTaskFailure
with error `ApprovalRejected` (reject). A link past its expiry is refused; the state's own
timeout then ends the wait without promoting. A link whose task no longer waits (timed out,
already answered, run ended) is refused as closed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinrisk.errors import ClinriskError, ConfigurationError
from clinrisk.ports import Notifier

Decision = Literal["approve", "reject"]
REJECTED_ERROR = "ApprovalRejected"  # the state machine catches this name: no promotion
MIN_SECRET_BYTES = 32  # HMAC-SHA256 keys shorter than the hash add no strength, only risk
# Step Functions' answers when the token's task no longer waits: it timed out, it was already
# answered (a second click), or the execution ended. The signature proved the token is ours.
_CLOSED_TASK_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
# Step Functions task tokens are up to 2,048 characters (the TaskToken shape of its API); a lower
# cap here would refuse real tokens and end the wait without ever asking an approver.
TASK_TOKEN_MAX_LENGTH = 2048


class InvalidApprovalLinkError(ClinriskError):
    """The link's signature does not match, or it has expired."""


class ApprovalClosedError(ClinriskError):
    """The approval task no longer waits for a decision; nothing was changed."""


class DecisionNotRecordedError(ClinriskError):
    """Step Functions could not be reached or refused the decision for another reason; the link
    still works and can be used again."""


class ApprovalRequest(BaseModel):
    """The RequestApproval state's Payload: its task token and what the approver needs to decide."""

    model_config = ConfigDict(extra="forbid")  # the state's Payload and this model agree

    task_token: str = Field(min_length=1, max_length=TASK_TOKEN_MAX_LENGTH)
    run_id: str = Field(min_length=1, max_length=80)
    trigger: str = Field("manual", max_length=64)
    task: str = "readmission"
    model_version: int = Field(ge=1)
    champion_before: int | None = None
    metrics: dict[str, float | None] = {}
    gate_reasons: list[str] = []
    link_valid_seconds: int = Field(
        86400, ge=1, le=7 * 86400, description="The state's approval timeout: links expire when the wait ends."
    )


class DecisionLink(BaseModel):
    """The query parameters of an approve or reject link."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=TASK_TOKEN_MAX_LENGTH)
    decision: Decision
    expires: int = Field(description="Unix seconds after which the link is refused.")
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")


class ApprovalRequestSettings(BaseSettings):
    """The approval-request Lambda's environment. The decision endpoint is given directly, or as
    the SSM parameter holding the API's base URL: the Serving stack writes that parameter, and
    reading it at run time keeps the Pipeline stack from depending on the Serving stack, which
    already depends on it."""

    model_config = SettingsConfigDict(env_prefix="CLINRISK_", extra="ignore")

    approvals_topic_arn: str = Field(description="SNS topic the approvers subscribe to.")
    approval_secret_arn: str = Field(description="Secrets Manager secret holding the HMAC key.")
    approval_base_url: str | None = Field(
        None, pattern=r"^https://", description="The decision endpoint, https://<api>/v1/approvals/decision."
    )
    approval_base_url_parameter: str | None = Field(
        None, pattern=r"^/", description="SSM parameter with the API's base URL; the endpoint is under it."
    )

    @model_validator(mode="after")
    def _one_way_to_the_endpoint(self) -> ApprovalRequestSettings:
        if (self.approval_base_url is None) == (self.approval_base_url_parameter is None):
            raise ValueError("set exactly one of CLINRISK_APPROVAL_BASE_URL and CLINRISK_APPROVAL_BASE_URL_PARAMETER")
        return self


DECISION_PATH = "v1/approvals/decision"


def decision_endpoint(settings: ApprovalRequestSettings, *, read_parameter: Callable[[str], str]) -> str:
    """The decision endpoint's URL: as configured, or the API base URL from SSM plus DECISION_PATH."""
    if settings.approval_base_url is not None:
        return settings.approval_base_url
    assert settings.approval_base_url_parameter is not None  # the validator guarantees one of the two
    api_url = read_parameter(settings.approval_base_url_parameter).strip()
    if not api_url.startswith("https://"):
        raise ConfigurationError(f"SSM parameter {settings.approval_base_url_parameter} does not hold an https URL")
    return f"{api_url.rstrip('/')}/{DECISION_PATH}"


class ApprovalDecisionSettings(BaseSettings):
    """The approval-decision Lambda's environment."""

    model_config = SettingsConfigDict(env_prefix="CLINRISK_", extra="ignore")

    approval_secret_arn: str = Field(description="Secrets Manager secret holding the HMAC key.")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(model: type[SettingsT]) -> SettingsT:
    """The Lambda's settings from its environment; a missing one is a ConfigurationError naming it."""
    try:
        return model()
    except ValidationError as error:
        names = ", ".join(
            f"CLINRISK_{'.'.join(map(str, e['loc'])).upper()}" if e["loc"] else e["msg"] for e in error.errors()
        )
        raise ConfigurationError(f"{model.__name__}: missing or invalid setting(s) {names}") from None


@functools.cache
def signing_secret(secret_arn: str) -> bytes:
    """The HMAC key, fetched from Secrets Manager once per process (once per cold start). After
    a rotation, links signed with the old key are refused once a new process starts."""
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(secret_arn, force_fetch=True)  # this cache, not Powertools', decides the lifetime
    secret = value.encode() if isinstance(value, str) else bytes(value)
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"the approval secret is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


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
            "trigger": request.trigger,
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
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    verify(link, secret=secret, now=now)
    try:
        if link.decision == "approve":
            output = {"decision": "approve", "decided_at": now.astimezone(UTC).isoformat()}
            step_functions.send_task_success(taskToken=link.token, output=json.dumps(output))
        else:
            step_functions.send_task_failure(
                taskToken=link.token, error=REJECTED_ERROR, cause="an approver rejected the promotion"
            )
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "ClientError"))
        if code in _CLOSED_TASK_CODES:
            raise ApprovalClosedError(
                "this approval request is closed: the run no longer waits for a decision (it timed out, "
                "was already answered, or ended); this link changed nothing"
            ) from None
        raise DecisionNotRecordedError(f"Step Functions did not record the decision: {code}") from None
    except BotoCoreError as error:
        raise DecisionNotRecordedError(f"Step Functions could not be reached: {type(error).__name__}") from None
    return link.decision
