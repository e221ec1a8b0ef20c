"""Who a manual promotion or rollback is recorded under: the IAM principal from STS GetCallerIdentity in
the cloud (botocore Stubber, with the API model validating the call), the OS user locally."""

from __future__ import annotations

import getpass
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.stub import Stubber  # type: ignore[import-untyped]

from clinrisk.adapters import aws
from clinrisk.errors import ConfigurationError
from clinrisk.settings import Settings

ARN = "arn:aws:sts::123456789012:assumed-role/clinrisk-operator/alice"


def _sts() -> tuple[Any, Stubber]:
    client = boto3.client("sts", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_the_cloud_principal_is_the_caller_identity_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    client, stubber = _sts()
    stubber.add_response(
        "get_caller_identity",
        {"UserId": "AROAEXAMPLE:alice", "Account": "123456789012", "Arn": ARN},
        expected_params={},
    )
    made: list[tuple[str, str | None]] = []

    def client_for(service: str, region: str | None = None) -> Any:
        made.append((service, region))
        return client

    monkeypatch.setattr(aws, "_client", client_for)
    with stubber:
        assert aws.acting_principal(Settings(backend="aws", aws_region="eu-west-1")) == ARN
    stubber.assert_no_pending_responses()
    assert made == [("sts", "eu-west-1")]


def test_without_an_identity_nothing_is_recorded_and_the_error_says_why() -> None:
    client, stubber = _sts()
    stubber.add_client_error("get_caller_identity", service_error_code="ExpiredToken", http_status_code=403)
    with stubber, pytest.raises(ConfigurationError, match=r"STS GetCallerIdentity: ExpiredToken.*was not done"):
        aws.caller_principal(client)


def test_locally_the_principal_is_the_os_user() -> None:
    assert aws.acting_principal(Settings(backend="local")) == f"local user {getpass.getuser()}"
