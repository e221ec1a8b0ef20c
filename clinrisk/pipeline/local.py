"""The retraining pipeline, run locally over the same stages as the cloud state machine:

    validate → train → evaluate → gate → promote → notify

Validation is strict and comes first, so a bad file stops the run before anything is trained
or registered. Any failure after that is reported (notify) and leaves the champion and the
serving pointer as they were: registration never moves `champion`, and promotion is atomic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from clinrisk.errors import ClinriskError
from clinrisk.pipeline import contracts, stages
from clinrisk.pipeline.contracts import Ports
from clinrisk.settings import DEFAULT_TASK, Settings

if TYPE_CHECKING:
    from clinrisk.data.task_port import Task

STAGES: tuple[str, ...] = ("validate", "train", "evaluate", "gate", "promote", "notify")

Outcome = Literal["promoted", "rejected", "stale", "failed"]
StageCallback = Callable[[str, str], None]


class PipelineResult(BaseModel):
    run_id: str
    trigger: str
    task: str = DEFAULT_TASK
    outcome: Outcome
    model_name: str
    model_version: int | None = None
    champion_before: int | None = None
    champion_after: int | None = None
    gate_passed: bool | None = None
    gate_reasons: list[str] = []
    metrics: dict[str, float | None] = {}
    rows: dict[str, int] = {}
    stage_seconds: dict[str, float] = {}
    error: str | None = None
    failed_stage: str | None = None


class PipelineFailedError(ClinriskError):
    """A stage failed; `result` says which, and what state the registry is in."""

    def __init__(self, message: str, result: PipelineResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class _Timer:
    result: PipelineResult
    on_stage: StageCallback

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.on_stage(name, "started")
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.result.failed_stage = self.result.failed_stage or name
            self.on_stage(name, "failed")
            raise
        finally:
            self.result.stage_seconds[name] = round(time.perf_counter() - started, 3)
        self.on_stage(name, "done")


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def notification_subject(result: PipelineResult) -> str:
    what = f"{result.model_name} v{result.model_version}"
    return {
        "promoted": f"clinrisk: {what} promoted to champion",
        "rejected": f"clinrisk: {what} rejected by the gate",
        "stale": f"clinrisk: {what} not promoted (the champion changed during the run)",
        "failed": f"clinrisk: retraining run {result.run_id} failed at {result.failed_stage}",
    }[result.outcome]


def run_pipeline(
    data_path: Path | Sequence[Path],
    settings: Settings,
    ports: Ports,
    *,
    trigger: str = "manual",
    hyperparameters: dict[str, Any] | None = None,
    on_stage: StageCallback = lambda stage, status: None,
    task: Task | None = None,
) -> PipelineResult:
    """Run every stage for `task` (readmission by default), on its own registered model and serving
    pointer, with its gate and training overrides; raise PipelineFailedError (after notifying) if one
    fails. `hyperparameters` given here win over the task file's."""
    from clinrisk.data.task_binding import resolve_task

    task = task or resolve_task()
    settings = task.settings(settings)
    ports = replace(ports, registry=ports.registry.for_task(task.name, task.model_name(settings)))
    result = PipelineResult(
        run_id=new_run_id(), trigger=trigger, task=task.name, outcome="failed", model_name=ports.registry.model_name
    )
    timer = _Timer(result, on_stage)
    try:
        _run_stages(
            run=contracts.RunInput(run_id=result.run_id, trigger=trigger, task=task.name),
            task=task,
            data_path=data_path,
            settings=settings,
            ports=ports,
            timer=timer,
            hyperparameters={**task.hyperparameters(), **(hyperparameters or {})},
        )
    except Exception as error:
        result.outcome = "failed"
        result.error = str(error)
        result.champion_after = ports.registry.champion_version()
        with timer.stage("notify"):
            ports.notifier.publish(notification_subject(result), result.model_dump(mode="json"))
        raise PipelineFailedError(f"{result.failed_stage} failed: {error}", result) from error
    return result


def _run_stages(
    *,
    run: contracts.RunInput,
    task: Task,
    data_path: Path | Sequence[Path],
    settings: Settings,
    ports: Ports,
    timer: _Timer,
    hyperparameters: dict[str, Any],
) -> None:
    result = timer.result
    with timer.stage("validate"):
        validated = stages.validate_data(run, data_path, store=ports.store, settings=settings, task=task)
        result.rows = validated.rows
    with timer.stage("train"):
        trained = stages.train(run, validated, ports=ports, hyperparameters=hyperparameters)
    with timer.stage("evaluate"):
        request = contracts.EvaluateInput(
            **run.model_dump(), model_prefix=trained.model_prefix, test_prefix=validated.channels["test"]
        )
        evaluated = stages.evaluate(request, ports=ports, settings=settings, task=task)
        result.model_version = evaluated.model_version
        result.champion_before = evaluated.champion_before
        result.metrics = evaluated.metrics
    with timer.stage("gate"):
        result.gate_passed, result.gate_reasons = evaluated.gate_passed, evaluated.gate_reasons
        result.outcome = "promoted" if evaluated.gate_passed else "rejected"
    if evaluated.gate_passed:
        with timer.stage("promote"):
            promoted = stages.promote(
                contracts.PromoteInput(
                    model_version=evaluated.model_version, expected_champion=evaluated.champion_before
                ),
                registry=ports.registry,
            )
            result.outcome = promoted.outcome
            if promoted.outcome == "stale":
                result.error = promoted.detail
    result.champion_after = ports.registry.champion_version()
    with timer.stage("notify"):
        ports.notifier.publish(notification_subject(result), result.model_dump(mode="json"))
