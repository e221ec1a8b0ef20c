"""Approval links: signed, expiring, and answered with SendTaskSuccess/Failure (botocore Stubber,
which validates every parameter against the Step Functions service model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.stub import ANY, Stubber  # type: ignore[import-untyped]

from clinrisk.adapters.local import OutboxNotifier
from clinrisk.registry.approval import (
    REJECTED_ERROR,
    TASK_TOKEN_MAX_LENGTH,
    ApprovalRequest,
    DecisionLink,
    InvalidApprovalLinkError,
    record_decision,
    request_approval,
)

SECRET = b"s" * 32
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TOKEN = "AAAAKgAAAAIAAAAAAAAAA" + "x" * 300  # task tokens are long and opaque


def _links(tmp_path: Path, token: str = TOKEN) -> dict[str, DecisionLink]:
    outbox = tmp_path / "outbox.jsonl"
    request = ApprovalRequest(
        task_token=token, run_id="r1", model_version=3, champion_before=2, metrics={"test_roc_auc": 0.68}
    )
    request_approval(request, notifier=OutboxNotifier(outbox), base_url="https://api.example/v1/approvals",
                     secret=SECRET, valid_for=timedelta(hours=24), now=NOW)  # fmt: skip
    message = json.loads(outbox.read_text())["message"]
    assert message["model_version"] == 3 and message["metrics"] == {"test_roc_auc": 0.68}
    return {d: DecisionLink.model_validate(dict(parse_qsl(urlsplit(message[d]).query))) for d in ("approve", "reject")}


def _client() -> tuple[object, Stubber]:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    return client, Stubber(client)


def test_approve_sends_task_success_with_the_token(tmp_path: Path) -> None:
    client, stub = _client()
    output = json.dumps({"decision": "approve", "decided_at": "2026-11-23T12:00:00+00:00"})
    stub.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": output})
    with stub:
        assert record_decision(_links(tmp_path)["approve"], step_functions=client, secret=SECRET, now=NOW) == "approve"
    stub.assert_no_pending_responses()


def test_reject_sends_task_failure(tmp_path: Path) -> None:
    client, stub = _client()
    stub.add_response("send_task_failure", {}, {"taskToken": TOKEN, "error": REJECTED_ERROR,
                                                 "cause": "an approver rejected the promotion"})  # fmt: skip
    with stub:
        record_decision(_links(tmp_path)["reject"], step_functions=client, secret=SECRET, now=NOW)
    stub.assert_no_pending_responses()


def test_a_reject_link_cannot_be_turned_into_approve(tmp_path: Path) -> None:
    forged = _links(tmp_path)["reject"].model_copy(update={"decision": "approve"})
    client, stub = _client()
    with stub, pytest.raises(InvalidApprovalLinkError, match="signature"):
        record_decision(forged, step_functions=client, secret=SECRET, now=NOW)


def test_another_secret_cannot_sign_links(tmp_path: Path) -> None:
    client, stub = _client()
    with stub, pytest.raises(InvalidApprovalLinkError, match="signature"):
        record_decision(_links(tmp_path)["approve"], step_functions=client, secret=b"t" * 32, now=NOW)


def test_an_expired_link_is_refused_and_nothing_is_sent(tmp_path: Path) -> None:
    client, stub = _client()
    later = NOW + timedelta(hours=24, seconds=1)
    with stub, pytest.raises(InvalidApprovalLinkError, match="expired"):
        record_decision(_links(tmp_path)["approve"], step_functions=client, secret=SECRET, now=later)
    stub.assert_no_pending_responses()


def test_the_email_carries_what_the_approver_decides_on(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    request = ApprovalRequest(task_token=TOKEN, run_id="r1", trigger="drift-alarm", model_version=3, champion_before=2,
                              metrics={"test_roc_auc": 0.68}, gate_reasons=["note"])  # fmt: skip
    request_approval(request, notifier=OutboxNotifier(outbox), base_url="https://api.example/v1/approvals/decision",
                     secret=SECRET, valid_for=timedelta(seconds=600), now=NOW)  # fmt: skip
    entry = json.loads(outbox.read_text())
    assert entry["subject"] == "clinrisk: approve promoting v3?"
    message = entry["message"]
    assert (message["trigger"], message["champion_before"], message["gate_reasons"]) == ("drift-alarm", 2, ["note"])
    assert message["expires_at"] == "2026-11-23T12:10:00+00:00"


def test_the_request_model_refuses_fields_the_state_does_not_send() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="approved_by"):
        ApprovalRequest.model_validate({"task_token": TOKEN, "run_id": "r1", "model_version": 1, "approved_by": "x"})


def test_the_token_cap_is_step_functions_own() -> None:
    # The TaskToken shape of SendTaskSuccess in botocore's service model: up to 2,048 characters.
    model = boto3.client("stepfunctions", region_name="us-east-1").meta.service_model
    token_shape = model.operation_model("SendTaskSuccess").input_shape.members["taskToken"]
    assert TASK_TOKEN_MAX_LENGTH == token_shape.metadata["max"] == 2048


def test_a_token_of_2048_characters_is_answered(tmp_path: Path) -> None:
    longest = "AAAAKgAAAAIAAAAAAAAAA" + "y" * (2048 - 21)
    client, stub = _client()
    stub.add_response("send_task_success", {}, {"taskToken": longest, "output": ANY})
    with stub:
        assert record_decision(_links(tmp_path, longest)["approve"], step_functions=client, secret=SECRET, now=NOW) == (
            "approve"
        )
    stub.assert_no_pending_responses()


def test_a_token_over_2048_characters_is_refused() -> None:
    from pydantic import ValidationError

    too_long = "z" * 2049
    with pytest.raises(ValidationError, match="task_token"):
        ApprovalRequest(task_token=too_long, run_id="r1", model_version=1)
    with pytest.raises(ValidationError, match="token"):
        DecisionLink(token=too_long, decision="approve", expires=0, signature="0" * 64)
