"""A local clinrisk home with one promoted champion, made once per test process."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lambdas.predict.routes as predict_routes
from clinrisk.data.tables import write_table
from clinrisk.pipeline.local import run_pipeline
from clinrisk.registry.serving_pointer import POINTER_KEY
from clinrisk.runtime import build_ports
from clinrisk.settings import Settings
from tests.conftest import PIPELINE_ROWS, cohort, local_settings
from tests.integration.live_api import LiveApi, clinrisk_serve
from tests.integration.predict_events import serve


@pytest.fixture(scope="session")
def promoted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose registry holds version 1 as champion, and a serving pointer to it."""
    root = tmp_path_factory.mktemp("promoted")
    data = root / "cohort.parquet"
    write_table(cohort(PIPELINE_ROWS, 7), data)
    settings = local_settings(root / "home")
    result = run_pipeline(data, settings, build_ports(settings))
    assert result.outcome == "promoted", result.gate_reasons
    return root / "home"


@pytest.fixture
def home_with_champion(promoted_home: Path, tmp_path: Path) -> Callable[[], Settings]:
    """A private copy of `promoted_home` (tests may change it)."""

    def copy() -> Settings:
        home = tmp_path / "home"
        # Tests that score with `promoted_home` itself (batch scoring, rollouts) capture into it;
        # a copy starts without those captures and monitor state, so a window holds only its own traffic.
        shutil.copytree(promoted_home, home, ignore=shutil.ignore_patterns("captures", "monitor"))
        # MLflow stores absolute artifact locations; the copy keeps pointing at the original
        # run artifacts, which tests only read.
        return local_settings(home)

    return copy


@pytest.fixture
def served(home_with_champion: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The predict handler of this process serving a private copy of `promoted_home`."""
    settings = home_with_champion()
    serve(monkeypatch, settings)
    yield settings
    predict_routes.serving.cache_clear()


@pytest.fixture(scope="module")
def live_api(promoted_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """`clinrisk serve` on an ephemeral port, serving a copy of `promoted_home`, with its log: readmission
    alone (no other task file; tests/integration/test_task_api.py serves several tasks)."""
    root = tmp_path_factory.mktemp("live")
    home, no_tasks = root / "home", root / "tasks"
    shutil.copytree(promoted_home, home)
    no_tasks.mkdir()
    with clinrisk_serve(home, {"CLINRISK_TASKS_DIR": str(no_tasks)}) as api:
        yield api


def pointer_bytes(settings: Settings) -> bytes:
    return (settings.store_root / POINTER_KEY).read_bytes()
