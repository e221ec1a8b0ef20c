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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from clinrisk.errors import ClinriskError
from clinrisk.ports import EndpointFailedError, EndpointInvoker, ObjectStore
from clinrisk.registry.serving_pointer import ModelFiles, ServingPointer, pointer_key, read_pointer
from clinrisk.serving.capture import capture_task_scored
from clinrisk.serving.endpoint_contract import parse_response, request_body
from clinrisk.serving.model_holder import PointerFollower
from clinrisk.serving.prediction import ModelInfo, Serving, high_risk, model_info, scored_records
from clinrisk.serving.scoring import Bands, Scored
from clinrisk.serving.task_scoring import TaskServingModel, task_bands
from clinrisk.settings import DEFAULT_TASK, Settings
from clinrisk.taskspec.catalogue import BrokenTaskFile, configured_tasks_dir, survey_tasks
from clinrisk.taskspec.features import feature_names
from clinrisk.taskspec.spec import TaskSpec


class UnknownTaskError(ClinriskError):
    """No task of that name is served here (404)."""


class TaskUnavailableError(ClinriskError):
    """A task this deployment has a file for but cannot serve (503): its file does not load, or its
    request contract cannot be built. The message names the task and the keys at fault, never a value."""


@dataclass(frozen=True)
class ServedTasks:
    """The tasks this deployment serves (`specs`, readmission first), and those it has a file for but
    cannot serve (`unavailable`: each task's reason). `broken` keeps the files that did not load,
    with their problems, for the log."""

    specs: dict[str, TaskSpec]
    unavailable: dict[str, str] = field(default_factory=dict)
    broken: tuple[BrokenTaskFile, ...] = ()

    def without(self, name: str, reason: str) -> ServedTasks:
        """These tasks with `name` taken out of service for `reason`."""
        specs = {other: spec for other, spec in self.specs.items() if other != name}
        return ServedTasks(specs, {**self.unavailable, name: reason}, self.broken)

    def refusal(self, task: str) -> ClinriskError:
        """The error for a request to `task`, which no route of a served task took: 503 for a task
        that is unavailable, 404 for any other name."""
        if task in self.unavailable:
            return TaskUnavailableError(self.unavailable[task])
        # The name is the caller's text: echoed only when it looks like a task name.
        named = repr(task) if task.replace("-", "").isalnum() and len(task) <= 40 else "of that name"
        return UnknownTaskError(f"no task {named} is served here (tasks: {', '.join(self.specs)})")


def served_tasks(settings: Settings) -> ServedTasks:
    """The tasks this deployment serves: readmission's packaged file, then the task files of
    `settings.tasks_dir` (the repository's `tasks/` when unset) by name. Each file is judged on its
    own: a file that does not load makes its task unavailable, never the others. A task with plugins
    other than readmission's cannot be served from its file alone, and is left out."""
    survey = survey_tasks(configured_tasks_dir(settings))
    loaded = survey.tasks
    readmission = {DEFAULT_TASK: loaded[DEFAULT_TASK].spec} if DEFAULT_TASK in loaded else {}
    generic = {name: task.spec for name, task in sorted(loaded.items()) if not task.spec.plugins}
    unavailable = {broken.name: unavailable_reason(broken) for broken in survey.broken if broken.name not in loaded}
    return ServedTasks({**readmission, **generic}, unavailable, tuple(survey.broken))


def unavailable_reason(broken: BrokenTaskFile) -> str:
    return f"{broken.unavailable()}; the service log has the problems"


def served_specs(settings: Settings) -> dict[str, TaskSpec]:
    """The specs of the tasks this deployment serves (`served_tasks`)."""
    return served_tasks(settings).specs


class TaskSummary(BaseModel):
    name: str
    description: str
    available: bool = Field(
        True, description="False: the deployment has this task's file but cannot serve it (its routes answer 503)."
    )
    unavailable_reason: str | None = Field(None, description="Why the task is unavailable; null when available.")
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
    unavailable: dict[str, str] = field(default_factory=dict)
    # The `sagemaker` serving mode of the predict function: each task's own endpoint, by task name.
    endpoints: Callable[[str], EndpointInvoker] | None = None
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
            raise ServedTasks(self.specs, self.unavailable).refusal(name)
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
        records = [record.model_dump() for record in request]
        scored, model_name, version = self._score(name, task, records, request_id)
        id_field = task.spec.record_id
        predictions = scored_records(scored, records, id_field=id_field, version=version, echo_as="record_id")
        response = TaskPredictResponse.model_validate(
            {"request_id": request_id, "task": name, "model_name": model_name, "model_version": version,
             "predictions": predictions}
        )  # fmt: skip
        if capture and self.readmission.capture is not None:
            capture_task_scored(
                self.readmission.capture, task=name, spec=task.spec, request_id=request_id,
                version=version, records=records, scored=scored, source="api",
            )  # fmt: skip
        return TaskOutcome(response=response, high_risk=high_risk(scored), seconds=time.perf_counter() - started)

    def _score(
        self, name: str, task: GenericTask, records: list[dict[str, Any]], request_id: str
    ) -> tuple[Sequence[Scored], str, int]:
        """The records scored by the task's champion (or its canary) in process, or on the task's own
        endpoint in the `sagemaker` serving mode, with the name and version that scored them."""
        top_k = self.settings.serving.top_factors
        if self.endpoints is None:
            model = task.follower.current().answering_model(request_id)
            return model.score(records, bands=task.bands, top_k=top_k), model.name, model.version
        body = request_body(records, [], bands=task.bands, top_k=top_k)  # a task's records carry no priors
        answer = parse_response(self.endpoints(name).invoke(body))
        if len(answer.scored) != len(records):
            raise EndpointFailedError(f"the endpoint scored {len(answer.scored)} of {len(records)} records")
        return answer.scored, answer.model_name, answer.model_version

    def model_info(self, name: str) -> ModelInfo:
        if name == DEFAULT_TASK:
            return self.readmission.model_info()
        task = self.task(name)
        return model_info(task.follower.current(), task.follower.status, features=feature_names(task.spec))

    def listing(self) -> list[TaskSummary]:
        """Every task, with its champion as its serving pointer names it (read, not loaded)."""
        served = [
            _summary(name, spec.description, read_pointer(self.store, pointer_key(name)))
            for name, spec in self.specs.items()
        ]
        unavailable = [
            TaskSummary(name=name, description="", available=False, unavailable_reason=reason,
                        model_name=None, champion=False, version=None)
            for name, reason in self.unavailable.items()
        ]  # fmt: skip
        return served + unavailable


def _summary(name: str, description: str, pointer: ServingPointer | None) -> TaskSummary:
    return TaskSummary(
        name=name,
        description=description,
        model_name=pointer.model_name if pointer else None,
        champion=pointer is not None,
        version=pointer.version if pointer else None,
    )
