"""Two pipelines at once against one local home, as two real `clinrisk` processes.

What happens: both validate and train independently; registration and promotion are
serialised by the registry lock. Each promotion is a compare-and-set against the champion
the run was evaluated against, so the second promotion either compares with the first run's
model (if it evaluated after the first promotion) or is refused as `stale`. Either way the
registry holds both versions, exactly one champion, and the pointer names that champion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clinrisk.checksums import directory_checksum
from clinrisk.registry.serving_pointer import read_pointer
from clinrisk.runtime import build_ports
from tests.conftest import local_settings

pytestmark = pytest.mark.integration


def test_two_concurrent_runs_leave_a_consistent_registry_and_pointer(
    tmp_path: Path, cohort_file: Callable[..., Path]
) -> None:
    settings = local_settings(tmp_path / "home")
    env = {
        **os.environ,
        "CLINRISK_HOME": str(settings.home_dir),
        "CLINRISK_BOOTSTRAP_ROUNDS": "50",
        # Floor and regression rules relaxed: this test is about concurrency, not the gate.
        "CLINRISK_GATE__AUC_FLOOR": "0.5",
        "CLINRISK_GATE__MAX_AUC_REGRESSION": "1.0",
    }
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clinrisk.local.cli",
                "pipeline",
                "run",
                "--json",
                "--data",
                str(cohort_file(seed=s)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (7, 8)
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        results.append(json.loads(out))

    assert sorted(r["model_version"] for r in results) == [1, 2]
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes in (["promoted", "promoted"], ["promoted", "stale"])
    registry = build_ports(settings).registry
    assert [v.version for v in registry.versions()] == [1, 2]
    champion = registry.champion_version()
    pointer = read_pointer(build_ports(settings).store)
    assert pointer is not None
    assert pointer.version == champion
    assert directory_checksum(settings.store_root / pointer.artifact_prefix) == pointer.checksum
    promoted_last = max((r for r in results if r["outcome"] == "promoted"), key=lambda r: r["model_version"])
    if outcomes == ["promoted", "stale"]:
        assert champion == promoted_last["model_version"]
