"""The local monitoring loop end to end: shifted traffic through the running local API (a real
uvicorn server, the predict handler in its execution-environment processes) → captures →
`monitor_locally` sees the drift → the local alarm goes into ALARM → the local rule starts one
retraining (the real pipeline; the gate decides) → the outbox records each step. A second drift
alarm while a run is active starts no second run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from clinrisk.local.api_server import create_app
from clinrisk.local.monitoring import monitor_locally
from clinrisk.monitoring.traffic import request_bodies, send, shifted_cohort, write_outcomes
from clinrisk.monitoring.window import read_window, utc_now
from clinrisk.pipeline.local import run_pipeline
from clinrisk.runtime import build_ports
from clinrisk.serving.auth import TokenVerifier, issue_token
from clinrisk.settings import Settings
from tests.conftest import PIPELINE_ROWS, cohort

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@contextmanager
def _api(settings: Settings) -> Iterator[str]:
    from lambdas.predict.handler import handler  # type: ignore[import-not-found, unused-ignore]

    app = create_app(handler, verifier=TokenVerifier.from_settings(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the local API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _outbox(settings: Settings) -> list[str]:
    return [json.loads(line)["subject"] for line in settings.outbox_path.read_text().splitlines()]


def _wait_for_captures(settings: Settings, rows: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = utc_now()
        table = read_window(settings.captures_root, task="readmission", start=now.replace(year=now.year - 1), end=now)
        if table.num_rows >= rows:
            return
        time.sleep(0.2)
    raise AssertionError("the captures did not arrive")


def test_shifted_traffic_drifts_alarms_and_retrains_once(
    home_with_champion: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = home_with_champion()
    monkeypatch.setenv("CLINRISK_HOME", str(settings.home_dir))  # read by the environment processes
    monkeypatch.setenv("CLINRISK_MONITORING__CAPTURE_FLUSH_SECONDS", "0.2")
    monkeypatch.setenv("CLINRISK_MONITORING__MIN_WINDOW", "300")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "clinrisk-test")
    settings = Settings()
    token = issue_token(["predict"], subject="test", ttl_seconds=600, settings=settings)
    frame = shifted_cohort("lab_missing", 600, seed=5)
    with _api(settings) as url:
        statuses = send(url, token, request_bodies(frame, 100))
        _wait_for_captures(settings, 600)  # written by the environments' capture threads, while they run
    assert statuses == {200: 6}

    ports = build_ports(settings)
    data = tmp_path / "retrain.parquet"
    from clinrisk.data.tables import write_table

    write_table(cohort(PIPELINE_ROWS, 9), data)
    runs: list[Any] = []
    nested: list[Any] = []

    def retrain() -> Any:
        # While this run is active, the alarm goes OK → ALARM once more (its state reset) and the
        # monitor runs again: the rule must not start a second run.
        (settings.monitor_dir / "alarms.json").unlink()
        nested.append(monitor_locally(settings, ports, hours=1, now=utc_now(), retrain=retrain))
        runs.append(run_pipeline(data, settings, ports, trigger="drift-alarm"))
        return runs[-1]

    first = monitor_locally(settings, ports, hours=1, now=utc_now(), retrain=retrain)
    [result] = first.results
    assert result.published and result.drifted_fields[:1] == ["A1Cresult"]
    assert [(t.alarm, t.state) for t in first.transitions if t.alarm == "feature-drift"] == [("feature-drift", "ALARM")]
    assert len(runs) == 1 and runs[0].trigger == "drift-alarm" and runs[0].outcome in {"promoted", "rejected"}
    assert first.retraining is runs[0]
    assert nested[0].retraining is None and "feature-drift" in [t.alarm for t in nested[0].transitions]

    subjects = _outbox(settings)
    drift_alarm = "clinrisk ALARM: readmission FeatureDrift model v1"
    started, refused = (
        "clinrisk: retraining started by the drift alarm",
        "clinrisk: retraining not started (a run is active)",
    )
    assert subjects.index(drift_alarm) < subjects.index(started) < subjects.index(refused)
    assert subjects.count(started) == 1 and len(subjects) > subjects.index(refused) + 1  # then the pipeline's own
    emf = [json.loads(line) for line in (settings.monitor_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(record.get("Environment") == "dev" and record["FeatureDrift"] > 0.25 for record in emf)
    outcomes = tmp_path / "outcomes.csv"
    write_outcomes(frame, outcomes)
    assert outcomes.read_text().splitlines()[0] == "encounter_id,readmitted"
