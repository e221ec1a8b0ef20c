"""Starting the retraining state machine in the cloud (`clinrisk pipeline start`).

When a run is already going, a new start is skipped, not queued or run beside it: a second
run would train on the same data, and its promotion would only be refused as `stale` by the
registry's compare-and-set. Skipping says so and names the running execution. The check and
the start are two calls, so two starters racing within milliseconds can still both start; the
compare-and-set then keeps the registry and the serving pointer consistent (see
`tests/integration/test_concurrent_pipelines.py`).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from clinrisk.errors import ClinriskError

TRIGGERS = ("manual", "schedule", "drift-alarm")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class StartRefusedError(ClinriskError):
    """The state machine could not be started (not configured, or AWS refused)."""


class StartResult(BaseModel):
    started: bool
    execution_arn: str
    run_id: str | None
    detail: str


def execution_name(trigger: str, now: datetime) -> str:
    """Also the run id the stages use: readable, sortable, unique, and a valid run id."""
    return _NAME_UNSAFE.sub("-", f"{now:%Y%m%dT%H%M%S}-{trigger}-{uuid.uuid4().hex[:8]}")[:80]


def start_retraining(client: Any, state_machine_arn: str, *, trigger: str, now: datetime | None = None) -> StartResult:
    """Start one execution unless one is running. `client` is a boto3 Step Functions client."""
    running = client.list_executions(stateMachineArn=state_machine_arn, statusFilter="RUNNING", maxResults=1)
    if running["executions"]:
        arn = running["executions"][0]["executionArn"]
        return StartResult(started=False, execution_arn=arn, run_id=None, detail="a run is already going; not started")
    name = execution_name(trigger, now or datetime.now(UTC))
    started = client.start_execution(
        stateMachineArn=state_machine_arn, name=name, input=json.dumps({"run_id": name, "trigger": trigger})
    )
    return StartResult(started=True, execution_arn=started["executionArn"], run_id=name, detail="started")
