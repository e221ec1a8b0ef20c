"""Serving follows the pointer: reloads while requests run, keeps the last good model when the
store fails, and routes canary and shadow challengers. Two real trained versions."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from clinrisk.adapters.aws import S3ObjectStore
from clinrisk.data.tables import write_table
from clinrisk.data.validation import ensure_valid
from clinrisk.pipeline.local import run_pipeline
from clinrisk.registry.serving_pointer import POINTER_KEY, read_pointer
from clinrisk.runtime import build_ports
from clinrisk.serving.model_holder import ModelHolder
from clinrisk.serving.prediction import PredictRequest, model_info, predict
from clinrisk.serving.scoring import Bands
from clinrisk.settings import GateRules, Settings
from tests.conftest import PIPELINE_ROWS, cohort, local_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_versions_home(promoted_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two-versions")
    home = root / "home"
    shutil.copytree(promoted_home, home)
    settings = local_settings(home, gate=GateRules(auc_floor=0.5, max_auc_regression=1.0))
    data = root / "second.parquet"
    write_table(cohort(PIPELINE_ROWS, 8), data)
    assert run_pipeline(data, settings, build_ports(settings)).model_version == 2
    return home


@pytest.fixture
def settings(two_versions_home: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(two_versions_home, home)
    settings = local_settings(home)
    build_ports(settings).registry.promote_manually(1)
    return settings


def _request(rows: int = 1) -> PredictRequest:
    frame = ensure_valid(cohort(400, 11), require_target=False).drop(columns=["readmitted"]).head(rows)
    return PredictRequest.model_validate(
        {"encounters": frame.astype(object).where(frame.notna(), None).to_dict("records")}
    )


def _answer(holder: ModelHolder, request: PredictRequest, request_id: str | None = None) -> tuple[int, float]:
    outcome = predict(request, deployment=holder.current(), request_id=request_id or str(uuid.uuid4()),
                      bands=Bands(0.1, 0.2), top_k=3)  # fmt: skip
    return outcome.response.model_version, outcome.response.predictions[0].probability


def test_promotion_while_requests_run_swaps_atomically(settings: Settings) -> None:
    holder = ModelHolder(build_ports(settings).store, check_seconds=0, cache_dir=settings.home_dir / "cache")
    request = _request()
    answers: list[tuple[int, float]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                answers.append(_answer(holder, request))
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    build_ports(settings).registry.promote_manually(2)
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    by_version: dict[int, set[float]] = {}
    for version, probability in answers:
        by_version.setdefault(version, set()).add(probability)
    assert set(by_version) == {1, 2}
    # One probability per version: no request was scored by a mix of two models.
    assert all(len(p) == 1 for p in by_version.values()), by_version
    assert by_version[1] != by_version[2]
    assert answers[-1][0] == 2


def test_a_corrupt_pointer_keeps_the_last_good_model_and_says_so(settings: Settings) -> None:
    store = build_ports(settings).store
    holder = ModelHolder(store, check_seconds=0, cache_dir=settings.home_dir / "cache")
    assert _answer(holder, _request())[0] == 1
    good = store.read_bytes(POINTER_KEY)
    store.write_bytes(POINTER_KEY, b'{"model_name": "half a poin')
    assert _answer(holder, _request())[0] == 1
    info = model_info(holder.current(), holder.status)
    assert info.serving_status == "stale"
    assert info.status_detail is not None and "CorruptPointerError" in info.status_detail
    store.write_bytes(POINTER_KEY, good)
    holder.current()
    assert model_info(holder.current(), holder.status).serving_status == "current"


def test_a_pointer_to_missing_files_keeps_the_last_good_model(settings: Settings) -> None:
    ports = build_ports(settings)
    holder = ModelHolder(ports.store, check_seconds=0, cache_dir=settings.home_dir / "cache")
    assert _answer(holder, _request())[0] == 1
    pointer = ports.registry.promote_manually(2)
    shutil.rmtree(settings.store_root / pointer.artifact_prefix)
    assert _answer(holder, _request())[0] == 1
    assert holder.status.stale


def test_an_unreachable_store_keeps_the_last_good_model(settings: Settings, tmp_path: Path) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    client.create_bucket(Bucket="artifacts")
    s3 = S3ObjectStore("artifacts", client=client)
    pointer = read_pointer(build_ports(settings).store)
    assert pointer is not None
    s3.upload_dir(settings.store_root / pointer.artifact_prefix, pointer.artifact_prefix)
    s3.write_bytes(POINTER_KEY, pointer.model_dump_json().encode())
    now = [0.0]
    holder = ModelHolder(s3, check_seconds=30, cache_dir=tmp_path / "cache", clock=lambda: now[0])
    assert _answer(holder, _request())[0] == 1
    server.stop()
    now[0] = 31.0  # the next request is due to re-read the pointer
    assert _answer(holder, _request())[0] == 1
    assert holder.status.stale
    assert model_info(holder.current(), holder.status).serving_status == "stale"


def _route(settings: Settings, mode: str, fraction: float = 0.0) -> ModelHolder:
    ports = build_ports(settings)
    ports.registry.route_challenger(2, mode=mode, fraction=fraction)  # type: ignore[arg-type]
    return ModelHolder(ports.store, check_seconds=0, cache_dir=settings.home_dir / "cache")


def test_a_canary_answers_its_fraction_and_the_same_request_id_always_lands_on_the_same_model(
    settings: Settings,
) -> None:
    holder = _route(settings, "canary", 0.25)
    request = _request()
    ids = [f"request-{i}" for i in range(400)]
    first = {rid: _answer(holder, request, rid)[0] for rid in ids}
    assert {rid: _answer(holder, request, rid)[0] for rid in ids} == first
    share = Counter(first.values())[2] / len(ids)
    assert 0.18 < share < 0.32, share
    assert model_info(holder.current(), holder.status).challenger == {"version": 2, "mode": "canary", "fraction": 0.25}


def test_a_shadow_is_scored_and_measured_but_never_answers(settings: Settings) -> None:
    holder = _route(settings, "shadow")
    for i in range(50):
        outcome = predict(_request(2), deployment=holder.current(), request_id=f"r{i}", bands=Bands(0.1, 0.2), top_k=1)
        assert outcome.response.model_version == 1
        assert outcome.shadow is not None and outcome.shadow.version == 2
        assert outcome.shadow.mean_absolute_difference > 0


def test_a_new_champion_ends_the_challenger_trial(settings: Settings) -> None:
    _route(settings, "shadow")
    pointer = build_ports(settings).registry.promote_manually(2)
    assert pointer.challenger is None


def test_a_canary_needs_a_fraction(settings: Settings) -> None:
    with pytest.raises(ValueError, match="fraction"):
        _route(settings, "canary", 0.0)


def test_the_challenger_command_routes_and_ends_a_trial(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from clinrisk.local.cli import app

    monkeypatch.setenv("CLINRISK_HOME", str(settings.home_dir))
    runner = CliRunner()
    result = runner.invoke(app, ["models", "challenger", "canary", "2", "--fraction", "0.2"])
    assert result.exit_code == 0, result.output
    pointer = read_pointer(build_ports(settings).store)
    assert pointer is not None and pointer.challenger is not None
    assert (pointer.challenger.version, pointer.challenger.mode, pointer.challenger.fraction) == (2, "canary", 0.2)
    assert runner.invoke(app, ["models", "challenger", "shadow", "1"]).exit_code != 0  # the champion itself
    assert runner.invoke(app, ["models", "challenger", "off"]).exit_code == 0
    pointer = read_pointer(build_ports(settings).store)
    assert pointer is not None and pointer.challenger is None
