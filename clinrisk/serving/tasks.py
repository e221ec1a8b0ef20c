"""One API, every task: the tasks serving knows, their contracts, and their models, each loaded
lazily through its own serving pointer under its own lock.

Readmission is served as it always was (`clinrisk.serving.prediction.Serving`, its hand-built
contract, its endpoint in the `sagemaker` mode). Every other task is a task file without plugins:
its request model is generated from the file (`clinrisk.serving.task_contract`) and its champion
is scored in process (`TaskServingModel`), in both serving modes. A task's follower is made on its
first request and loads only on a request for that task: the first request of a newly loaded
task waits for its own model, never another task's requests for theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import ModelFiles, ServingPointer, pointer_key, read_pointer
from clinrisk.serving.capture import capture_task_scored
from clinrisk.serving.model_holder import PointerFollower
from clinrisk.serving.prediction import ModelInfo, Serving, model_info
from clinrisk.serving.scoring import Bands, Scored
from clinrisk.serving.task_scoring import TaskServingModel, task_bands
from clinrisk.settings import DEFAULT_TASK, Settings
from clinrisk.taskspec.catalogue import TASKS_DIR, discover_tasks
from clinrisk.taskspec.features import feature_names
from clinrisk.taskspec.spec import TaskSpec


class UnknownTaskError(ClinriskError):
    """No task of that name is served here (404)."""


def served_specs(settings: Settings) -> dict[str, TaskSpec]:
    """The tasks this deployment serves: readmission's packaged file, then the task files of
    `settings.tasks_dir` (the repository's `tasks/` when unset) by name. A task with plugins other
    than readmission's cannot be served from its file alone, and is left out."""
    loaded = discover_tasks(settings.tasks_dir or TASKS_DIR)
    generic = {name: task.spec for name, task in sorted(loaded.items()) if not task.spec.plugins}
    return {DEFAULT_TASK: loaded[DEFAULT_TASK].spec, **generic}


class TaskSummary(BaseModel):
    name: str
    description: str
    model_name: str | None = Field(description="The registered model serving this task; null without a champion.")
    champion: bool = Field(description="Whether a champion is live (promoted) for this task.")
    version: int | None = Field(description="The champion's version; null without a champion.")


class TaskPrediction(Scored):
    record_id: str | int = Field(description="The record's id as sent.")
    model_version: int


class TaskPredictResponse(BaseModel):
    request_id: str
    task: str
    model_name: str
    model_version: int
    predictions: list[TaskPrediction]


@dataclass(frozen=True)
class TaskOutcome:
    response: TaskPredictResponse
    high_risk: int
    seconds: float


@dataclass(frozen=True)
class GenericTask:
    """What serving keeps of one generic task: its file, its bands and its model follower."""

    spec: TaskSpec
    bands: Bands
    follower: PointerFollower[TaskServingModel]


@dataclass
class TaskServing:
    """Every task's predictions, model and listing; built once per process (`clinrisk.runtime`)."""

    settings: Settings
    store: ObjectStore
    readmission: Serving
    specs: dict[str, TaskSpec]
    _tasks: dict[str, GenericTask] = field(default_factory=dict)
    _making: threading.Lock = field(default_factory=threading.Lock)

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def task(self, name: str) -> GenericTask:
        """The generic task `name`; its follower is made (not loaded) on first use."""
        made = self._tasks.get(name)
        if made is not None:
            return made
        spec = self.specs.get(name) if name != DEFAULT_TASK else None
        if spec is None:
            raise UnknownTaskError(f"no task {name!r} is served here (tasks: {', '.join(self.names)})")
        with self._making:  # a dict insert: never held while a model loads
            made = self._tasks.get(name)
            if made is None:
                made = self._tasks[name] = GenericTask(
                    spec=spec, bands=task_bands(self.settings, spec),
                    follower=self._follower(spec),
                )  # fmt: skip
        return made

    def _follower(self, spec: TaskSpec) -> PointerFollower[TaskServingModel]:
        def load(directory: Any, name: str, files: ModelFiles) -> TaskServingModel:
            return TaskServingModel.load(
                directory, spec=spec, name=name, version=files.version, checksum=files.checksum
            )

        return PointerFollower(
            self.store, check_seconds=self.settings.serving.pointer_check_seconds, load=load,
            key=pointer_key(spec.name),
        )  # fmt: skip

    def predict(self, name: str, request: Sequence[BaseModel], *, request_id: str, capture: bool = True) -> TaskOutcome:
        """Score `request` (the task's validated records) with the task's champion (or its canary);
        captured under the task's name unless `capture` is off (explanations are not predictions)."""
        started = time.perf_counter()
        task = self.task(name)
        deployment = task.follower.current()
        model = deployment.answering_model(request_id)
        records = [record.model_dump() for record in request]
        scored = model.score(records, bands=task.bands, top_k=self.settings.serving.top_factors)
        id_field = task.spec.record_id
        predictions = [
            {**s.model_dump(), "record_id": r[id_field], "model_version": model.version}
            for s, r in zip(scored, records, strict=True)
        ]
        response = TaskPredictResponse.model_validate(
            {"request_id": request_id, "task": name, "model_name": model.name, "model_version": model.version,
             "predictions": predictions}
        )  # fmt: skip
        if capture and self.readmission.capture is not None:
            capture_task_scored(
                self.readmission.capture, task=name, spec=task.spec, request_id=request_id,
                version=model.version, records=records, scored=scored, source="api",
            )  # fmt: skip
        high = sum(s.band == "high" for s in scored)
        return TaskOutcome(response=response, high_risk=high, seconds=time.perf_counter() - started)

    def model_info(self, name: str) -> ModelInfo:
        if name == DEFAULT_TASK:
            return self.readmission.model_info()
        task = self.task(name)
        return model_info(task.follower.current(), task.follower.status, features=feature_names(task.spec))

    def listing(self) -> list[TaskSummary]:
        """Every task, with its champion as its serving pointer names it (read, not loaded)."""
        return [
            _summary(name, spec.description, read_pointer(self.store, pointer_key(name)))
            for name, spec in self.specs.items()
        ]


def _summary(name: str, description: str, pointer: ServingPointer | None) -> TaskSummary:
    return TaskSummary(
        name=name,
        description=description,
        model_name=pointer.model_name if pointer else None,
        champion=pointer is not None,
        version=pointer.version if pointer else None,
    )
