"""`clinrisk serve` runs the predict and explain functions in one process: each task file that cannot
be served is logged once there (in the cloud each function is its own process and logs it once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clinrisk.taskspec.catalogue import TASKS_DIR

pytestmark = pytest.mark.integration

_COLD_START = "import lambdas.predict.task_routes, lambdas.explain.routes"


def test_predict_and_explain_in_one_process_log_each_unserved_task_once(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    document = yaml.safe_load((TASKS_DIR / "heart-disease.yaml").read_text())
    (tasks / "sepsis.yaml").write_text("name: sepsis\ncolumns: [{name: lactate\n")  # not YAML
    wide = {**document, "name": "wide", "columns": [*document["columns"], {"name": "model_dump", "type": "boolean"}]}
    (tasks / "wide.yaml").write_text(yaml.safe_dump(wide))  # loads; its request contract cannot be built
    env = {**os.environ, "CLINRISK_HOME": str(tmp_path / "home"), "CLINRISK_TASKS_DIR": str(tasks),
           "POWERTOOLS_METRICS_NAMESPACE": "clinrisk-test"}  # fmt: skip
    ran = subprocess.run(
        [sys.executable, "-c", _COLD_START], env=env, cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    records = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    logged = [(r["message"], r["task"]) for r in records if r["message"].startswith("task ")]
    assert sorted(logged) == [("task contract not built", "wide"), ("task file not served", "sepsis")], logged
