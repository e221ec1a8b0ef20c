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
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from clinrisk.adapters.local_endpoint import LocalEndpoint
from clinrisk.data.task_binding import resolve_task, task_for
from clinrisk.data.validation import DataValidationError
from clinrisk.local.cli import app
from clinrisk.pipeline import stages
from clinrisk.pipeline.contracts import PromoteInput
from clinrisk.registry.model_registry import ARTIFACT_PREFIX_TAG, CHAMPION, PREVIOUS_CHAMPION
from clinrisk.registry.serving_pointer import POINTER_KEY, pointer_key
from clinrisk.registry.tracking import tracking_at
from clinrisk.runtime import build_ports, build_serving, build_task_serving
from clinrisk.serving.endpoint_contract import parse_response, request_body
from clinrisk.serving.model_holder import NoChampionError
from clinrisk.serving.scoring import Bands
from clinrisk.serving.task_contract import request_model
from clinrisk.serving.task_scoring import TaskServingModel
from clinrisk.settings import SageMakerServing, Settings
from clinrisk.taskspec.spec import TaskSpec, load_task, normalise_code
from tests.heart_synthetic import HEART_RECORD, heart_frame
from tests.three_tasks import cli_home

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
    with cli_home(root / "home"):
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


def test_the_promote_stage_promotes_in_the_registry_its_input_names(two_tasks: TwoTasks) -> None:
    """The promote function gets the deployment's registry (readmission's) and the task in its input."""
    store = two_tasks.settings.store_root
    drafted_pointer = (store / pointer_key("cleveland")).read_bytes()
    deployment = build_ports(two_tasks.settings).registry
    request = PromoteInput(model_version=1, expected_champion=2, task="heart-disease")
    assert stages.promote(request, registry=deployment).outcome == "promoted"
    assert json.loads((store / pointer_key("heart-disease")).read_text())["version"] == 1
    assert (store / pointer_key("cleveland")).read_bytes() == drafted_pointer
    assert not (store / POINTER_KEY).exists() and deployment.champion_version() is None
    stale = stages.promote(
        PromoteInput(model_version=2, expected_champion=2, task="heart-disease"), registry=deployment
    )
    assert stale.outcome == "stale"  # the compare-and-set runs against the task's own champion


def _typed_records(spec: TaskSpec, frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Records as the pyfunc's signature types them: codes as text (None when missing), else numbers."""
    kinds = {column.name: column.type for column in spec.columns}
    return pd.DataFrame(
        {
            name: [None if pd.isna(v) else normalise_code(v) for v in frame[name]]
            if kinds[name] == "categorical"
            else frame[name].astype(float)
            for name in names
        }
    )


def _dicts(typed: pd.DataFrame) -> list[dict[str, Any]]:
    """The records as the API hands them to scoring: None where a value is missing."""
    rows = typed.astype(object).where(typed.notna(), None).to_dict("records")
    return [{str(k): v for k, v in row.items()} for row in rows]


@pytest.mark.parametrize(("task", "version"), [("heart-disease", 2), ("cleveland", 1)])
def test_every_task_registers_a_pyfunc_that_loads_and_scores_as_serving_does(
    two_tasks: TwoTasks, task: str, version: int
) -> None:
    """The shipped task and the drafted one (whose file is in no catalogue): `mlflow.pyfunc.load_model`
    loads the registered version and scores raw records (typed as the signature says, no target) with
    the probabilities serving gives the same records; a value outside the task's codes is refused."""
    settings = two_tasks.settings
    spec = (resolve_task(task) if task == "heart-disease" else task_for(load_task(two_tasks.drafted))).source.spec
    with tracking_at(settings.tracking_uri):
        pyfunc = mlflow.pyfunc.load_model(f"models:/clinrisk-{task}/{version}")
    assert pyfunc.metadata.signature is not None
    inputs = pyfunc.metadata.get_input_schema().input_names()
    assert spec.target.column not in inputs and {c.name for c in spec.feature_columns} <= set(inputs)
    records = heart_frame(40, seed=23)
    records.loc[0, "chol"] = np.nan  # a missing value is still scored
    typed = _typed_records(spec, records, inputs)

    from_mlflow = pyfunc.predict(typed)["probability"].to_numpy()

    tags = MlflowClient(settings.tracking_uri).get_model_version(f"clinrisk-{task}", str(version)).tags
    model = TaskServingModel.load(
        settings.store_root / tags[ARTIFACT_PREFIX_TAG], spec=spec, name=task, version=version, checksum="-"
    )
    rows = _dicts(typed)
    served = [s.probability for s in model.score(rows, bands=Bands(medium_from=0.1, high_from=0.2), top_k=0)]
    assert len(from_mlflow) == 40
    np.testing.assert_allclose(from_mlflow, served, rtol=0, atol=1e-9)
    coded = next(c for c in spec.feature_columns if c.type == "categorical")
    bad = typed.copy()
    bad.loc[0, coded.name] = "99"
    with pytest.raises(DataValidationError, match=coded.name):
        pyfunc.predict(bad)


def test_in_the_sagemaker_mode_a_tasks_promotion_deploys_its_own_endpoint_which_scores_it(
    two_tasks: TwoTasks,
) -> None:
    """`sagemaker` serving mode, locally (`LocalEndpoint` runs inference.py on the archive): promoting
    heart-disease deploys its champion to heart-disease's endpoint (`endpoint_for`), not readmission's,
    and that endpoint loads the task's model and scores its records as serving does."""
    settings, task = two_tasks.settings, "heart-disease"
    endpoints = {"readmission": "clinrisk-test-predict", task: "clinrisk-test-heart-disease"}
    mode = SageMakerServing(endpoint_name=endpoints["readmission"], endpoint_names=endpoints)
    registry = build_ports(settings.model_copy(update={"sagemaker": mode})).registry.for_task(task, f"clinrisk-{task}")
    champion = registry.champion_version()
    assert champion is not None

    pointer = registry.promote_manually(champion, reason="serve it on its endpoint", actor="test")

    state_dir = settings.home_dir / "endpoints"
    assert not (state_dir / f"{endpoints['readmission']}.json").exists()
    deployed = json.loads((state_dir / f"{endpoints[task]}.json").read_text())
    assert deployed["deployment_name"] == f"{endpoints[task]}-v{champion}-{pointer.checksum[:8]}"
    spec = resolve_task(task).source.spec
    names = [c.name for c in spec.columns if c.name != spec.target.column]
    typed = _typed_records(spec, heart_frame(30, seed=29), names)
    records = _dicts(typed)
    bands = Bands(medium_from=0.1, high_from=0.2)
    endpoint = LocalEndpoint(build_ports(settings).store, name=endpoints[task], state_dir=state_dir)

    answer = parse_response(endpoint.invoke(request_body(records, [], bands=bands, top_k=3)))

    assert (answer.model_name, answer.model_version) == (f"clinrisk-{task}", champion)
    model = TaskServingModel.load(
        settings.store_root / pointer.artifact_prefix, spec=spec, name=task, version=champion, checksum="-"
    )
    assert answer.scored == model.score(records, bands=bands, top_k=3)

    # The predict function's serving of the task, in the same mode, scores on that endpoint: with the
    # task's serving pointer gone, scoring in process has no champion, and the endpoint still answers.
    mode_settings = settings.model_copy(update={"sagemaker": mode})
    (settings.store_root / pointer_key(task)).unlink()
    second = {**HEART_RECORD, "row_id": "h-2", "cp": 1}
    request = request_model(spec).model_validate({"records": [HEART_RECORD, second]})
    on_endpoint = build_task_serving(mode_settings, build_serving(mode_settings), on_endpoints=True)
    outcome = on_endpoint.predict(task, request.records, request_id="q", capture=False)
    assert (outcome.response.model_name, outcome.response.model_version) == (f"clinrisk-{task}", champion)
    served = [p.probability for p in outcome.response.predictions]
    as_scored = [record.model_dump() for record in request.records]
    assert served == [s.probability for s in model.score(as_scored, bands=on_endpoint.task(task).bands, top_k=3)]
    in_process = build_task_serving(mode_settings, build_serving(mode_settings))
    with pytest.raises(NoChampionError):
        in_process.predict(task, request.records, request_id="q", capture=False)
