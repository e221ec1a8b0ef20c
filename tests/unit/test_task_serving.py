"""Serving many tasks: each task's routes need the scope of the route they mirror, and each task's
model loads under its own lock, so one task's load never holds another task's requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from clinrisk.adapters.local import DirectoryObjectStore
from clinrisk.checksums import directory_checksum
from clinrisk.registry.serving_pointer import ServingPointer, pointer_key, write_pointer
from clinrisk.serving import tasks as tasks_module
from clinrisk.serving.prediction import Serving
from clinrisk.serving.scoring import Bands, Scored
from clinrisk.serving.tasks import TaskServing, UnknownTaskError
from clinrisk.settings import DEFAULT_TASK, Settings
from clinrisk.taskspec.catalogue import TASKS_DIR
from clinrisk.taskspec.spec import TaskSpec, load_task
from lambdas.predict.guard import RefusedError, admit

# --------------------------------------------------------------------------- scopes


def _event(method: str, path: str, scope: str) -> dict[str, Any]:
    return {
        "httpMethod": method,
        "path": path,
        "headers": {"Content-Type": "application/json"},
        "body": "{}",
        "requestContext": {"authorizer": {"claims": {"scope": f"clinrisk/{scope}"}}},
    }


@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [
        ("POST", "/v1/tasks/heart-disease/predict", "predict"),
        ("POST", "/v1/tasks/no-such-task/predict", "predict"),
        ("GET", "/v1/tasks/heart-disease/model", "predict"),
        ("GET", "/v1/tasks", "predict"),
        ("POST", "/v1/tasks/heart-disease/explain", "explain"),
    ],
)
def test_a_task_route_needs_the_scope_of_the_route_it_mirrors(method: str, path: str, needs: str) -> None:
    other = "explain" if needs == "predict" else "predict"
    with pytest.raises(RefusedError) as refused:
        admit(_event(method, path, other))
    assert refused.value.response["statusCode"] == 403
    assert admit(_event(method, path, needs))["path"] == path


def test_a_task_routes_body_gets_the_json_rules() -> None:
    event = _event("POST", "/v1/tasks/heart-disease/predict", "predict") | {"headers": {"Content-Type": "text/plain"}}
    with pytest.raises(RefusedError) as refused:
        admit(event)
    assert refused.value.response["statusCode"] == 415


# --------------------------------------------------------------------------- loading per task


@dataclass(frozen=True)
class _Model:
    name: str
    version: int
    checksum: str

    def score(self, records: Sequence[Mapping[str, Any]], *, bands: Bands, top_k: int) -> list[Scored]:
        return [Scored(probability=0.5, band="high", factors=[]) for _ in records]


class _Record(BaseModel):
    row_id: str


@pytest.fixture
def two_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TaskServing, threading.Event]]:
    """Two tasks with a champion each; loading `slow`'s model blocks until the event is set."""
    store = DirectoryObjectStore(tmp_path / "store")
    heart = load_task(TASKS_DIR / "heart-disease.yaml").spec
    specs: dict[str, TaskSpec] = {"fast": heart.model_copy(update={"name": "fast"}),
                                  "slow": heart.model_copy(update={"name": "slow"})}  # fmt: skip
    for name in specs:
        model_dir = tmp_path / name
        model_dir.mkdir()
        (model_dir / "model.json").write_text(name)
        store.upload_dir(model_dir, f"models/{name}/1")
        write_pointer(
            store,
            ServingPointer(
                model_name=f"clinrisk-{name}",
                version=1,
                model_uri=f"models:/clinrisk-{name}/1",
                artifact_prefix=f"models/{name}/1",
                checksum=directory_checksum(model_dir),
                run_id="r",
                promoted_at=datetime.now(UTC),
            ),
            pointer_key(name),
        )
    release, loading = threading.Event(), threading.Event()

    def load(directory: Path, *, spec: TaskSpec, name: str, version: int, checksum: str) -> _Model:
        if spec.name == "slow":
            loading.set()
            assert release.wait(120), "the slow load was never released"
        return _Model(name=name, version=version, checksum=checksum)

    monkeypatch.setattr(tasks_module.TaskServingModel, "load", load)
    settings = Settings(home=tmp_path / "home")
    readmission = Serving(settings, Bands.from_settings(settings), store, None, None, None)
    serving = TaskServing(settings, store, readmission, {DEFAULT_TASK: heart, **specs})
    yield serving, loading
    release.set()


def test_loading_one_tasks_model_never_holds_another_tasks_requests(
    two_tasks: tuple[TaskServing, threading.Event],
) -> None:
    serving, loading = two_tasks
    answered: list[str] = []
    slow = threading.Thread(target=lambda: answered.append(_predict(serving, "slow")), daemon=True)
    slow.start()
    assert loading.wait(30), "the slow task's load did not start"
    # While the slow task's model is still loading (its loader is blocked until the test ends), the
    # other task loads its own model and answers: no lock, list or thread of the slow task is in its
    # way. (The join's bound only turns a hang into a failure; nothing here is timed.)
    fast = threading.Thread(target=lambda: answered.append(_predict(serving, "fast")), daemon=True)
    fast.start()
    fast.join(30)
    assert not fast.is_alive(), "the fast task's request waited for the slow task's load"
    assert answered == ["clinrisk-fast"] and slow.is_alive()


def test_the_listing_reads_pointers_while_a_model_loads(
    two_tasks: tuple[TaskServing, threading.Event],
) -> None:
    serving, loading = two_tasks
    slow = threading.Thread(target=lambda: _predict(serving, "slow"), daemon=True)
    slow.start()
    assert loading.wait(30)
    assert [t.name for t in serving.listing()] == [DEFAULT_TASK, "fast", "slow"]  # reads pointers, loads nothing
    assert [t.champion for t in serving.listing()] == [False, True, True]
    with pytest.raises(UnknownTaskError, match="no task 'sepsis'"):
        serving.task("sepsis")


def _predict(serving: TaskServing, name: str) -> str:
    return serving.predict(name, [_Record(row_id="r-1")], request_id="q", capture=False).response.model_name


# --------------------------------------------------------------------------- one path for readmission


def _route_functions(app: Any) -> dict[tuple[str, str], Any]:
    # The resolver keeps its routes in these two lists (there is no public accessor).
    return {(route.method, route.path): route.func for route in [*app._static_routes, *app._dynamic_routes]}


def test_readmissions_task_routes_are_its_default_routes_not_a_second_implementation() -> None:
    import lambdas.explain.handler as explain_handler
    import lambdas.predict.handler as predict_handler

    predict = _route_functions(predict_handler.app)
    explain = _route_functions(explain_handler.app)
    assert predict[("POST", "/v1/tasks/readmission/predict")] is predict[("POST", "/v1/predict")]
    assert predict[("GET", "/v1/tasks/readmission/model")] is predict[("GET", "/v1/model")]
    assert explain[("POST", "/v1/tasks/readmission/explain")] is explain[("POST", "/v1/explain")]
