"""The two approval Lambdas, run as Lambda runs them, against AWS's own API models: SNS, SQS and
Secrets Manager in moto; Step Functions through botocore's Stubber, which validates every
parameter against the service model and can answer with the errors a closed task gets."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.stub import ANY, Stubber  # type: ignore[import-untyped]
from moto import mock_aws

from clinrisk.errors import ConfigurationError
from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
from clinrisk.registry import approval
from clinrisk.registry.approval import REJECTED_ERROR, DecisionLink, decision_link
from lambdas.common import BadEventError

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

REGION = "us-east-1"
SECRET = "0123456789abcdef" * 4  # 64 characters, as a generated secret would be
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAA" + "t0k3n" * 60  # task tokens are long and opaque; never logged
BASE_URL = "https://api.example.org/v1/approvals/decision"
Handler = Callable[[Any, Any], dict[str, Any]]


@dataclass(frozen=True)
class Cloud:
    secret_arn: str
    topic_arn: str
    queue_url: str
    sqs: Any

    def messages(self) -> list[dict[str, Any]]:
        """SNS deliveries to the approvers' queue (raw envelopes: Subject and Message)."""
        received = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in received]


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with mock_aws():
        secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="clinrisk-approval", SecretString=SECRET
        )["ARN"]
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic_arn = sns.create_topic(Name="clinrisk-approvals")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="approvers")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        for name, value in {
            "CLINRISK_APPROVALS_TOPIC_ARN": topic_arn,
            "CLINRISK_APPROVAL_SECRET_ARN": secret_arn,
            "CLINRISK_APPROVAL_BASE_URL": BASE_URL,
            "CLINRISK_AWS_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "1",
        }.items():
            monkeypatch.setenv(name, value)
        _cold_start()
        yield Cloud(secret_arn, topic_arn, queue_url, sqs)
        _cold_start()


def _cold_start() -> None:
    """What a new Lambda process starts with: no cached settings, clients or secret."""
    approval.signing_secret.cache_clear()
    importlib.import_module("lambdas.approval_request.handler")._wiring.cache_clear()
    importlib.import_module("lambdas.approval_decision.routes")._wiring.cache_clear()


def _context(name: str) -> LocalLambdaContext:
    return LocalLambdaContext(aws_request_id="req-1", deadline_epoch=time.time() + 60, function_name=name)


def _request_handler() -> Handler:
    handler: Handler = importlib.import_module("lambdas.approval_request.handler").handler
    return handler


def _payload(**changes: Any) -> dict[str, Any]:
    """The RequestApproval state's Payload."""
    return {
        "task_token": TOKEN,
        "run_id": "20261123T090000-schedule-ab12cd34",
        "trigger": "schedule",
        "model_version": 4,
        "champion_before": 3,
        "metrics": {"test_roc_auc": 0.68, "champion_test_roc_auc": 0.67},
        "gate_reasons": [],
        "link_valid_seconds": 86400,
        **changes,
    }


def _logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    return "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records) + str(
        capsys.readouterr()
    )


# --------------------------------------------------------------------------- approval request


def test_the_request_emails_two_signed_links_that_expire_with_the_wait(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC)
    result = _request_handler()(_payload(link_valid_seconds=3600), _context("clinrisk-approval-request"))

    assert result == {"requested": True, "model_version": 4}
    [delivery] = cloud.messages()
    assert delivery["Subject"] == "clinrisk: approve promoting v4?"
    message = json.loads(delivery["Message"])
    assert (message["run_id"], message["trigger"], message["champion_before"]) == (
        "20261123T090000-schedule-ab12cd34", "schedule", 3)  # fmt: skip
    assert message["metrics"]["test_roc_auc"] == 0.68
    links = {d: DecisionLink.model_validate(dict(parse_qsl(urlsplit(message[d]).query))) for d in ("approve", "reject")}
    for decision, link in links.items():
        assert message[decision].startswith(BASE_URL + "?")
        assert (link.token, link.decision) == (TOKEN, decision)
        approval.verify(link, secret=SECRET.encode(), now=datetime.now(UTC))  # signed with the stored secret
        assert before + timedelta(seconds=3600) <= datetime.fromtimestamp(link.expires + 1, UTC)
        assert datetime.fromtimestamp(link.expires, UTC) <= datetime.now(UTC) + timedelta(seconds=3600)
    assert TOKEN not in _logged(caplog, capsys)


def test_the_secret_is_fetched_once_per_cold_start(cloud: Cloud) -> None:
    _request_handler()(_payload(), _context("clinrisk-approval-request"))
    # Rotated in Secrets Manager: the warm process keeps the key it started with...
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(SecretId=cloud.secret_arn,
                                                                         SecretString="r" * 64)  # fmt: skip
    _request_handler()(_payload(), _context("clinrisk-approval-request"))
    # ...and a new process fetches the new one.
    _cold_start()
    _request_handler()(_payload(), _context("clinrisk-approval-request"))
    secrets = []
    for delivery in cloud.messages():
        link = DecisionLink.model_validate(dict(parse_qsl(urlsplit(json.loads(delivery["Message"])["approve"]).query)))
        secrets.append(next(s for s in (SECRET, "r" * 64) if _signed_by(link, s)))
    assert sorted(secrets) == sorted([SECRET, SECRET, "r" * 64])


def _signed_by(link: DecisionLink, secret: str) -> bool:
    try:
        approval.verify(link, secret=secret.encode(), now=datetime.now(UTC))
    except approval.InvalidApprovalLinkError:
        return False
    return True


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task_token": ""}, "task_token"),
        ({"model_version": 0}, "model_version"),
        ({"link_valid_seconds": 0}, "link_valid_seconds"),
        ({"metrics": {"test_roc_auc": "SENTINEL-9f3c"}}, "metrics"),
        ({"approve_automatically": True}, "approve_automatically"),
    ],
)
def test_a_bad_payload_sends_nothing(cloud: Cloud, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(BadEventError, match=field) as raised:
        _request_handler()(_payload(**changes), _context("clinrisk-approval-request"))
    assert "SENTINEL" not in str(raised.value) and TOKEN not in str(raised.value)
    assert cloud.messages() == []


def test_a_missing_setting_is_named(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINRISK_APPROVAL_BASE_URL")
    with pytest.raises(ConfigurationError, match="CLINRISK_APPROVAL_BASE_URL"):
        _request_handler()(_payload(), _context("clinrisk-approval-request"))
    assert cloud.messages() == []


def test_the_endpoint_can_come_from_the_ssm_parameter_the_serving_stack_writes(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLINRISK_APPROVAL_BASE_URL")
    monkeypatch.setenv("CLINRISK_APPROVAL_BASE_URL_PARAMETER", "/clinrisk/dev/api-url")
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/clinrisk/dev/api-url", Value="https://abc123.execute-api.eu-west-1.amazonaws.com/api/", Type="String"
    )
    _request_handler()(_payload(), _context("clinrisk-approval-request"))
    [message] = cloud.messages()
    assert "https://abc123.execute-api.eu-west-1.amazonaws.com/api/v1/approvals/decision?" in message["Message"]


def test_an_endpoint_given_twice_is_a_configuration_error(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINRISK_APPROVAL_BASE_URL_PARAMETER", "/clinrisk/dev/api-url")
    with pytest.raises(ConfigurationError, match="exactly one of CLINRISK_APPROVAL_BASE_URL"):
        _request_handler()(_payload(), _context("clinrisk-approval-request"))
    assert cloud.messages() == []


def test_a_short_secret_is_refused(cloud: Cloud) -> None:
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(SecretId=cloud.secret_arn, SecretString="short")
    with pytest.raises(ConfigurationError, match="shorter than 32 bytes"):
        _request_handler()(_payload(), _context("clinrisk-approval-request"))
    assert cloud.messages() == []


# --------------------------------------------------------------------------- approval decision


def _decision_handler() -> Handler:
    handler: Handler = importlib.import_module("lambdas.approval_decision.handler").handler
    return handler


def _stub() -> Stubber:
    """A Stubber on the decision Lambda's own Step Functions client."""
    _, client = importlib.import_module("lambdas.approval_decision.routes")._wiring()
    return Stubber(client)


def _link_url(decision: approval.Decision, *, secret: str = SECRET, expires_in: float = 3600) -> str:
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    return decision_link(BASE_URL, TOKEN, decision, secret=secret.encode(), expires_at=expires_at)


def _open(url: str, method: str = "GET") -> dict[str, Any]:
    """What API Gateway hands the Lambda for a click on `url` (GET) or its confirm button (POST)."""
    parts = urlsplit(url)
    headers = [("host", parts.netloc), ("content-type", "application/x-www-form-urlencoded")]
    request = HttpRequest(method=method, path=parts.path, query_string=parts.query.encode(), headers=headers,
                          body=b"", source_ip="198.51.100.7", protocol="HTTP/1.1")  # fmt: skip
    event = proxy_event(request, claims=None, request_id="req-1", received_at=time.time())
    return _decision_handler()(event, _context("clinrisk-approval-decision"))


def test_opening_a_link_only_asks_for_confirmation(cloud: Cloud) -> None:
    stub = _stub()
    with stub:  # no response queued: any Step Functions call would fail the test
        response = _open(_link_url("approve"))
    assert response["statusCode"] == 200
    assert _headers(response)["content-type"].startswith("text/html")
    assert "<form method=post>" in response["body"] and "Approve" in response["body"]
    assert TOKEN not in response["body"]
    stub.assert_no_pending_responses()


def _headers(response: dict[str, Any]) -> dict[str, str]:
    single = response.get("headers") or {}
    multi = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return {k.lower(): v for k, v in {**multi, **single}.items()}


def test_pages_forbid_framing_caching_and_referrers(cloud: Cloud) -> None:
    headers = _headers(_open(_link_url("reject")))
    assert headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_confirming_approve_sends_task_success(cloud: Cloud) -> None:
    stub = _stub()
    stub.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": ANY})
    with stub:
        response = _open(_link_url("approve"), method="POST")
    stub.assert_no_pending_responses()
    assert response["statusCode"] == 200 and "Approved" in response["body"]


def test_confirming_reject_sends_task_failure_with_the_error_the_machine_catches(cloud: Cloud) -> None:
    stub = _stub()
    stub.add_response(
        "send_task_failure",
        {},
        {"taskToken": TOKEN, "error": REJECTED_ERROR, "cause": "an approver rejected the promotion"},
    )
    with stub:
        response = _open(_link_url("reject"), method="POST")
    stub.assert_no_pending_responses()
    assert response["statusCode"] == 200 and "not promoted" in response["body"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_forged_link_is_forbidden_and_sends_nothing(cloud: Cloud, method: str) -> None:
    reject = _link_url("reject")
    forged = reject.replace("decision=reject", "decision=approve")
    stub = _stub()
    with stub:
        response = _open(forged, method=method)
    assert response["statusCode"] == 403 and "signature" in response["body"]


def test_a_link_signed_with_another_secret_is_forbidden(cloud: Cloud) -> None:
    stub = _stub()
    with stub:
        response = _open(_link_url("approve", secret="x" * 64), method="POST")
    assert response["statusCode"] == 403


def test_an_expired_link_is_forbidden_and_sends_nothing(cloud: Cloud) -> None:
    stub = _stub()
    with stub:
        response = _open(_link_url("approve", expires_in=-1), method="POST")
    assert response["statusCode"] == 403 and "expired" in response["body"]


def test_an_incomplete_link_names_the_missing_parameters_only(cloud: Cloud) -> None:
    url = _link_url("approve")
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("signature", "expires")]
    response = _open(f"{BASE_URL}?{urlencode(kept)}")
    assert response["statusCode"] == 400
    assert "expires" in response["body"] and "signature" in response["body"]
    assert TOKEN not in response["body"]


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_a_task_that_no_longer_waits_is_gone(cloud: Cloud, code: str) -> None:
    stub = _stub()
    stub.add_client_error("send_task_success", service_error_code=code, http_status_code=400)
    with stub:
        response = _open(_link_url("approve"), method="POST")
    assert response["statusCode"] == 410
    assert "closed" in response["body"] and "changed nothing" in response["body"]


def test_a_step_functions_failure_is_a_bad_gateway_and_the_link_still_works(cloud: Cloud) -> None:
    stub = _stub()
    stub.add_client_error("send_task_failure", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_response("send_task_failure", {}, {"taskToken": TOKEN, "error": REJECTED_ERROR,
                                                 "cause": "an approver rejected the promotion"})  # fmt: skip
    url = _link_url("reject")
    with stub:
        assert _open(url, method="POST")["statusCode"] == 502
        assert _open(url, method="POST")["statusCode"] == 200
    stub.assert_no_pending_responses()


def test_the_token_never_reaches_the_logs(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    stub = _stub()
    stub.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": ANY})
    with stub:
        _open(_link_url("approve"))
        _open(_link_url("approve"), method="POST")
        _open(_link_url("approve", expires_in=-1), method="POST")
    assert TOKEN not in _logged(caplog, capsys)
