"""A task's gate and alarm rules: the deployment's, with what its task file overrides. One function,
so that training's gate, the local alarms and the cloud alarms (cdk_app) judge a task alike."""

from __future__ import annotations

from clinrisk.settings import GateRules, MonitoringRules
from clinrisk.taskspec.spec import TaskSpec


def task_gate(spec: TaskSpec, gate: GateRules) -> GateRules:
    return gate.model_copy(update=spec.gate.model_dump(exclude_none=True))


def task_monitoring(spec: TaskSpec, monitoring: MonitoringRules) -> MonitoringRules:
    return monitoring.model_copy(update=spec.monitoring.model_dump(exclude_none=True))
