"""`clinrisk pipeline start` against a moto Step Functions: start, skip while running, CLI errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from clinrisk.local.cli import app
from clinrisk.pipeline.contracts import RUN_ID_PATTERN
from clinrisk.pipeline.orchestration import execution_name, start_retraining

DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


@pytest.fixture
def state_machine() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(
            name="clinrisk-retraining", definition=DEFINITION, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        yield client, arn


def test_a_start_runs_the_state_machine_with_the_run_id_and_trigger(state_machine: tuple[Any, str]) -> None:
    client, arn = state_machine
    result = start_retraining(client, arn, trigger="schedule")
    assert result.started
    execution = client.describe_execution(executionArn=result.execution_arn)
    assert json.loads(execution["input"]) == {"run_id": result.run_id, "trigger": "schedule"}
    assert execution["name"] == result.run_id


def test_a_start_while_a_run_is_going_is_skipped_and_names_the_running_one(state_machine: tuple[Any, str]) -> None:
    client, arn = state_machine
    first = start_retraining(client, arn, trigger="drift-alarm")  # moto keeps executions RUNNING
    second = start_retraining(client, arn, trigger="drift-alarm")
    assert not second.started
    assert second.execution_arn == first.execution_arn
    assert len(client.list_executions(stateMachineArn=arn)["executions"]) == 1


def test_execution_names_are_valid_run_ids() -> None:
    import re
    from datetime import UTC, datetime

    name = execution_name("drift alarm/x", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert re.fullmatch(RUN_ID_PATTERN, name)
    assert name.startswith("20260102T030405-drift-alarm-x-")


def test_the_cli_needs_the_state_machine_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINRISK_STATE_MACHINE_ARN", raising=False)
    result = CliRunner().invoke(app, ["pipeline", "start"])
    assert result.exit_code == 2
    assert "CLINRISK_STATE_MACHINE_ARN" in result.output


def test_the_cli_starts_then_skips(state_machine: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, arn = state_machine
    monkeypatch.setenv("CLINRISK_STATE_MACHINE_ARN", arn)
    monkeypatch.setenv("CLINRISK_AWS_REGION", "us-east-1")
    first = CliRunner().invoke(app, ["pipeline", "start", "--trigger", "manual"])
    assert first.exit_code == 0, first.output
    assert "started" in first.output
    second = CliRunner().invoke(app, ["pipeline", "start"])
    assert "already going" in second.output


def test_an_unknown_trigger_is_bad_input(state_machine: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINRISK_STATE_MACHINE_ARN", state_machine[1])
    assert CliRunner().invoke(app, ["pipeline", "start", "--trigger", "whenever"]).exit_code == 2
