"""`clinrisk pipeline run --task` on tasks other than readmission, through real MLflow and the same
stages: a task drafted by `task init` trains and promotes as drafted; each task has its own registered
model, aliases and serving pointer; promotion and rollback are recorded with who and why."""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from clinrisk.data.task_binding import resolve_task
from clinrisk.local.cli import app
from clinrisk.registry.model_registry import CHAMPION, PREVIOUS_CHAMPION
from clinrisk.registry.serving_pointer import POINTER_KEY, pointer_key
from clinrisk.settings import Settings
from tests.heart_synthetic import heart_frame

pytestmark = pytest.mark.integration
runner = CliRunner()


@dataclass(frozen=True)
class TwoTasks:
    settings: Settings
    drafted: Path  # the task file `task init` wrote, as it wrote it
    drafted_data: Path
    drafted_run: dict[str, object]
    heart_runs: list[dict[str, object]]


def _run(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoTasks]:
    root = tmp_path_factory.mktemp("tasks")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CLINRISK_HOME", str(root / "home"))
        env.setenv("CLINRISK_BOOTSTRAP_ROUNDS", "50")
        data = root / "cleveland.csv"  # a Cleveland-like CSV with a header
        heart_frame(800, seed=11).to_csv(data, index=False)
        drafted = root / "T.yaml"
        init = runner.invoke(app, ["task", "init", str(data), "--target", "num", "-o", str(drafted)])
        assert init.exit_code == 0, init.output
        drafted_run = _run("pipeline", "run", "--task", str(drafted), "--data", str(data))
        heart_data = resolve_task("heart-disease").synthesize(root / "heart", rows=800, seed=5)
        heart_runs = [
            _run("pipeline", "run", "--task", "heart-disease", "--data", str(heart_data[0])) for _ in range(2)
        ]
        yield TwoTasks(Settings(), drafted, data, drafted_run, heart_runs)


@pytest.fixture(autouse=True)
def _same_home(two_tasks: TwoTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands of each test run on the module's home (the session clears CLINRISK_* per test)."""
    monkeypatch.setenv("CLINRISK_HOME", str(two_tasks.settings.home))


def test_a_drafted_task_trains_and_promotes_with_nothing_edited(two_tasks: TwoTasks) -> None:
    run = two_tasks.drafted_run
    assert (run["task"], run["model_name"], run["outcome"]) == ("cleveland", "clinrisk-cleveland", "promoted")
    assert run["rows"]["input"] == 800  # type: ignore[index]
    assert [r["outcome"] for r in two_tasks.heart_runs] == ["promoted", "promoted"]
    assert [r["model_version"] for r in two_tasks.heart_runs] == [1, 2]


def test_the_run_logs_the_data_file_the_task_file_and_the_code_version(two_tasks: TwoTasks) -> None:
    client = MlflowClient(tracking_uri=two_tasks.settings.tracking_uri)
    version = client.get_model_version("clinrisk-cleveland", "1")
    assert version.run_id is not None
    params = client.get_run(version.run_id).data.params
    expected = {
        "task": "cleveland",
        "data_uri": two_tasks.drafted_data.resolve().as_uri(),
        "data_sha256": hashlib.sha256(two_tasks.drafted_data.read_bytes()).hexdigest(),
        "task_file_sha256": hashlib.sha256(two_tasks.drafted.read_bytes()).hexdigest(),
    }
    assert {key: params[key] for key in expected} == expected
    assert params["code_version"].startswith(("git ", "clinrisk "))
    assert {key: version.tags[key] for key in expected} == expected  # the registered version carries it too


def test_each_task_has_its_own_registered_model_aliases_and_pointer(two_tasks: TwoTasks) -> None:
    client = MlflowClient(tracking_uri=two_tasks.settings.tracking_uri, registry_uri=two_tasks.settings.tracking_uri)
    heart = client.get_registered_model("clinrisk-heart-disease").aliases
    drafted = client.get_registered_model("clinrisk-cleveland").aliases
    assert (heart[CHAMPION], heart[PREVIOUS_CHAMPION]) == (2, 1)
    assert drafted == {CHAMPION: 1}
    store = two_tasks.settings.store_root
    assert json.loads((store / pointer_key("heart-disease")).read_text())["model_name"] == "clinrisk-heart-disease"
    assert json.loads((store / pointer_key("cleveland")).read_text())["version"] == 1
    assert not (store / POINTER_KEY).exists()  # readmission's pointer: no task here touched it


def test_rollback_and_promote_touch_one_task_and_record_who_and_why(two_tasks: TwoTasks) -> None:
    store = two_tasks.settings.store_root
    drafted_pointer = (store / pointer_key("cleveland")).read_bytes()
    client = MlflowClient(tracking_uri=two_tasks.settings.tracking_uri, registry_uri=two_tasks.settings.tracking_uri)
    drafted_aliases = client.get_registered_model("clinrisk-cleveland").aliases

    refused = runner.invoke(app, ["models", "rollback", "--task", "heart-disease"])
    assert refused.exit_code == 2 and "--reason" in refused.output
    assert json.loads((store / pointer_key("heart-disease")).read_text())["version"] == 2  # nothing done

    rolled = runner.invoke(app, ["models", "rollback", "--task", "heart-disease", "--reason", "v2 drifts on site VA"])
    assert rolled.exit_code == 0, rolled.output
    assert json.loads((store / pointer_key("heart-disease")).read_text())["version"] == 1
    promoted = runner.invoke(
        app, ["models", "promote", "2", "--task", "heart-disease", "--reason", "VA drift was a feed error"]
    )
    assert promoted.exit_code == 0, promoted.output

    assert (store / pointer_key("cleveland")).read_bytes() == drafted_pointer
    assert client.get_registered_model("clinrisk-cleveland").aliases == drafted_aliases
    trail = _run("models", "history", "--task", "heart-disease")
    me = f"local user {getpass.getuser()}"
    assert [(e["action"], e["version"], e["previous"], e["actor"], e["reason"]) for e in trail] == [  # type: ignore[index]
        ("promote", 1, None, "retraining pipeline", "passed the promotion gate"),
        ("promote", 2, 1, "retraining pipeline", "passed the promotion gate"),
        ("rollback", 1, 2, me, "v2 drifts on site VA"),
        ("promote-manual", 2, 1, me, "VA drift was a feed error"),
    ]
    assert len(_run("models", "history", "--task", str(two_tasks.drafted))) == 1
    printed = runner.invoke(app, ["models", "history", "--task", "heart-disease"])
    assert printed.exit_code == 0 and "VA drift was a feed error" in printed.output
