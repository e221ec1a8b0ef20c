"""The evaluate and promote Lambda handlers, run as Lambda runs them (Powertools decorators, a
Lambda context) on the local backend: real MLflow, real registry, real object store.

One module-scoped fixture runs the pipeline once, which leaves version 1 as the champion, and
registers the same model again as version 2 (a challenger). Tests read the registry's state
instead of assuming an order, so each one holds alone.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from clinrisk.data.tables import write_table
from clinrisk.pipeline import contracts, stages
from clinrisk.pipeline.contracts import Ports
from clinrisk.pipeline.local import run_pipeline
from clinrisk.ports import ObjectNotFoundError
from clinrisk.registry.model_registry import Registry, RegistryError
from clinrisk.registry.serving_pointer import POINTER_KEY, read_pointer
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.synth import generate_cohort
from lambdas import common
from lambdas.common import BadEventError

pytestmark = [
    pytest.mark.integration,
    # A handler that fails before adding a metric flushes none; Powertools warns about that.
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

Handler = Callable[[Any, Any], dict[str, Any]]
SENTINEL = "SENTINEL-9f3c"  # an event value that must never reach a log line or a message


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "clinrisk-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:clinrisk-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class World:
    settings: Settings
    ports: Ports
    run_id: str
    evaluate: Handler
    promote: Handler

    @property
    def registry(self) -> Registry:
        return self.ports.registry

    def model_prefix(self) -> str:
        return f"{contracts.run_prefix(self.run_id)}/model"

    def test_channel(self) -> str:
        return f"{contracts.run_prefix(self.run_id)}/channels/test"

    def snapshot(self) -> tuple[int | None, list[int], bytes]:
        """Champion, registered versions and the serving pointer's bytes: what must not change."""
        versions = [v.version for v in self.registry.versions()]
        return self.registry.champion_version(), versions, self.ports.store.read_bytes(POINTER_KEY)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("clinrisk-home")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "CLINRISK_HOME": str(home),
            "CLINRISK_BACKEND": "local",
            "CLINRISK_GATE__AUC_FLOOR": "0.5",
            "CLINRISK_GATE__MAX_SUBGROUP_AUC_GAP": "1.0",
            "CLINRISK_BOOTSTRAP_ROUNDS": "20",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "clinrisk",
        }.items():
            env.setenv(name, value)
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.delenv("CLINRISK_MLFLOW_TRACKING_URI", raising=False)
        common.runtime.cache_clear()
        # Powertools reads its environment when the handler modules create it.
        evaluate_module = importlib.import_module("lambdas.evaluate.handler")
        promote_module = importlib.import_module("lambdas.promote.handler")

        # The cold start: the handlers' ports come from this environment, before the suite's
        # autouse fixture clears CLINRISK_HOME around each test.
        settings, ports = common.runtime().settings, common.runtime().ports
        assert settings.home_dir == home.resolve()
        data = home / "cohort.parquet"
        write_table(generate_cohort(3000, seed=7), data)
        result = run_pipeline(data, settings, ports, hyperparameters={"num_round": 150})
        assert result.outcome == "promoted", result.gate_reasons
        request = contracts.EvaluateInput(
            run_id=result.run_id,
            model_prefix=f"{contracts.run_prefix(result.run_id)}/model",
            test_prefix=f"{contracts.run_prefix(result.run_id)}/channels/test",
        )
        stages.evaluate(request, ports=ports, settings=settings)  # version 2, a challenger
        yield World(settings, ports, result.run_id, evaluate_module.handler, promote_module.handler)
        common.runtime.cache_clear()


def _invoke(handler: Handler, event: Any) -> dict[str, Any]:
    return handler(event, FakeLambdaContext())


def _emf_metrics(output: str) -> dict[str, float]:
    """The metric values of the EMF lines Powertools printed."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        record = json.loads(line)
        assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "clinrisk"
        for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = record[metric["Name"]]  # Powertools writes each value as a one-item list
            values[metric["Name"]] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return values


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The handler's log records as the JSON lines Powertools writes to CloudWatch."""
    formatter = common.logger.registered_formatter
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == common.logger.name]


def _non_champion(world: World) -> int:
    champion = world.registry.champion_version()
    return max(v.version for v in world.registry.versions() if v.version != champion)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_registers_a_challenger_and_emits_gate_metrics(
    world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    champion, versions, _ = world.snapshot()

    output = _invoke(
        world.evaluate,
        {"run_id": world.run_id, "model_prefix": world.model_prefix(), "test_prefix": world.test_channel()},
    )

    parsed = contracts.EvaluateOutput.model_validate(output)
    assert parsed.model_version == max(versions) + 1
    assert parsed.champion_before == champion
    assert parsed.gate_passed  # the same model as the champion: no regression
    assert world.registry.champion_version() == champion  # registering never promotes
    emitted = _emf_metrics(capfd.readouterr().out)
    assert emitted["GatePassed"] == 1
    assert emitted["TestRocAuc"] == pytest.approx(parsed.metrics["test_roc_auc"])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"model_prefix": "runs/x/model", "test_prefix": "runs/x/channels/test"}, "run_id"),
        ({"run_id": "r1", "test_prefix": "runs/x/channels/test"}, "model_prefix"),
        ({"run_id": f"../{SENTINEL}", "model_prefix": "m", "test_prefix": "t"}, "run_id"),
        ({"run_id": "r1", "model_prefix": ["not", "a", "string"], "test_prefix": "t"}, "model_prefix"),
    ],
)
def test_evaluate_bad_event_names_the_field(
    world: World, caplog: pytest.LogCaptureFixture, event: dict[str, Any], field: str
) -> None:
    before = world.snapshot()

    with pytest.raises(BadEventError, match=rf"\b{field}\b") as raised:
        _invoke(world.evaluate, event)

    assert field in raised.value.fields
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert SENTINEL not in str(raised.value)
    assert SENTINEL not in json.dumps(_log_lines(caplog))
    assert world.snapshot() == before


def test_evaluate_of_a_missing_model_raises_not_found_and_registers_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    before = world.snapshot()
    event = {"run_id": "missing-run", "model_prefix": "runs/missing-run/model", "test_prefix": world.test_channel()}

    with pytest.raises(ObjectNotFoundError, match="runs/missing-run/model"):
        _invoke(world.evaluate, event)

    assert world.snapshot() == before
    failure = next(line for line in _log_lines(caplog) if line["message"] == "stage failed")
    assert failure["error"] == "ObjectNotFoundError"
    assert failure["function_request_id"] == FakeLambdaContext.aws_request_id


# --------------------------------------------------------------------------- promote


def test_promote_makes_the_version_champion_and_moves_the_pointer(
    world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    champion = world.registry.champion_version()
    version = _non_champion(world)

    output = _invoke(world.promote, {"model_version": version, "expected_champion": champion})

    assert output == {"outcome": "promoted", "champion": version, "detail": f"version {version} is the champion"}
    assert world.registry.champion_version() == version
    pointer = read_pointer(world.ports.store)
    assert pointer is not None
    assert (pointer.version, pointer.previous_version) == (version, champion)
    assert _emf_metrics(capfd.readouterr().out) == {"Promotions": 1}


def test_promote_against_a_changed_champion_is_stale_and_changes_nothing(
    world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    champion, versions, pointer = world.snapshot()
    version = _non_champion(world)
    wrong = max(versions) + 10

    output = _invoke(world.promote, {"model_version": version, "expected_champion": wrong})

    assert output["outcome"] == "stale"
    assert output["champion"] == champion
    assert str(wrong) in output["detail"]
    assert world.snapshot() == (champion, versions, pointer)
    assert _emf_metrics(capfd.readouterr().out) == {"StalePromotions": 1}


def test_promote_with_no_expected_champion_while_one_serves_is_stale(world: World) -> None:
    before = world.snapshot()

    output = _invoke(world.promote, {"model_version": _non_champion(world), "expected_champion": None})

    assert output["outcome"] == "stale"
    assert world.snapshot() == before


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"expected_champion": 1}, "model_version"),
        ({"model_version": 0, "expected_champion": 1}, "model_version"),
        ({"model_version": -3, "expected_champion": 1}, "model_version"),
        ({"model_version": SENTINEL, "expected_champion": 1}, "model_version"),
        ({"model_version": 1.5, "expected_champion": 1}, "model_version"),
        ({"model_version": 2}, "expected_champion"),
        ({"model_version": 2, "expected_champion": SENTINEL}, "expected_champion"),
    ],
)
def test_promote_bad_event_names_the_field_and_changes_nothing(
    world: World, caplog: pytest.LogCaptureFixture, event: dict[str, Any], field: str
) -> None:
    before = world.snapshot()

    with pytest.raises(BadEventError, match=rf"\b{field}\b") as raised:
        _invoke(world.promote, event)

    assert raised.value.fields == (field,)
    assert SENTINEL not in str(raised.value)
    logged = _log_lines(caplog)
    assert SENTINEL not in json.dumps(logged)
    warning = next(line for line in logged if line["message"] == "bad event")
    assert (warning["error"], warning["invalid_fields"]) == ("BadEventError", [field])
    assert warning["function_name"] == FakeLambdaContext.function_name
    assert world.snapshot() == before


@pytest.mark.parametrize("event", [None, [], "not json", 42])
def test_promote_event_that_is_not_an_object_is_bad(world: World, event: Any) -> None:
    with pytest.raises(BadEventError, match="invalid PromoteInput event"):
        _invoke(world.promote, event)


def test_promote_of_an_unknown_version_raises_registry_error_and_changes_nothing(world: World) -> None:
    before = world.snapshot()
    champion, versions, _ = before

    with pytest.raises(RegistryError, match=f"no version {max(versions) + 5}"):
        _invoke(world.promote, {"model_version": max(versions) + 5, "expected_champion": champion})

    assert world.snapshot() == before


def test_ports_are_built_once_per_cold_start(world: World) -> None:
    first = common.runtime()
    assert common.runtime() is first
    assert first.settings.home_dir == world.settings.home_dir


def test_bad_event_error_survives_pickling() -> None:
    import pickle

    error = BadEventError("invalid X event: a: Field required", ("a",))
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.fields, type(copy)) == (str(error), ("a",), BadEventError)


# The validate Lambda reads the data bucket, which only the aws backend has: its tests run
# against moto in tests/integration/test_cloud_stage_handlers.py, with the evaluate Lambda's archive path.
