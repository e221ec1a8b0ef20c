"""Monitoring for a task other than readmission (issue 14 part 6), on the heart-disease task and
synthetic data: the training job writes its reference from the task file, serving captures its
inputs, and the monitor finds a planted shift in one heart column, and nothing without one."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from clinrisk.capture.capturer import Capturer
from clinrisk.capture.keys import IdKeyer
from clinrisk.capture.local_sink import ParquetCaptureSink
from clinrisk.data.task_binding import resolve_task
from clinrisk.data.task_tables import validate_task_table
from clinrisk.local import cli
from clinrisk.local.cli import app
from clinrisk.monitoring.fields import OTHER
from clinrisk.monitoring.monitor import MonitorResult
from clinrisk.monitoring.reference import REFERENCE_FILE, MonitoringReference, plain_value
from clinrisk.monitoring.window import monitored_versions, read_window, run_monitor
from clinrisk.runtime import build_store
from clinrisk.serving.capture import capture_task_scored
from clinrisk.serving.model_holder import fetch_model_files
from clinrisk.serving.task_scoring import TaskServingModel, task_bands
from clinrisk.settings import Settings
from clinrisk.taskspec.spec import BooleanColumn, CategoricalColumn
from tests.sagemaker_training import train_from_directories

pytestmark = pytest.mark.integration
HEART = "heart-disease"
runner = CliRunner()


def _unpacked(packed: bytes, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as archive:
        archive.extractall(into, filter="data")
    return into


@pytest.fixture(scope="module")
def heart_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A heart-disease model trained by the training job on synthetic site rows, with the task channel."""
    root = tmp_path_factory.mktemp("heart")
    task = resolve_task(HEART)
    frame = task.load(task.synthesize(root / "data", rows=1500, seed=5))
    splits = task.split(frame, seed=1, test=0.1, validation=0.4)
    channels: dict[str, Path] = {}
    for name in ("train", "validation"):
        task.write_channel(splits[name], root / name / f"{name}.csv.gz")
        channels[name] = root / name
    (root / "task").mkdir()
    shutil.copy(task.source.path, root / "task" / "heart-disease.yaml")
    channels["task"] = root / "task"
    return _unpacked(train_from_directories(channels, {"num_round": "60"}), root / "model")


def test_the_training_job_writes_a_heart_disease_reference_from_its_task_file(heart_model: Path) -> None:
    assert (heart_model / REFERENCE_FILE).is_file()
    reference = MonitoringReference.load(heart_model)
    spec = resolve_task(HEART).source.spec
    assert list(reference.fields) == [column.name for column in spec.feature_columns]
    assert reference.captured_in == "inputs"
    for column in spec.feature_columns:
        bins = reference.fields[column.name]
        if isinstance(column, CategoricalColumn):  # one bin per declared code, then other and missing
            assert bins.kind == "categorical" and bins.categories == [*column.codes, OTHER]
        elif isinstance(column, BooleanColumn):
            assert bins.kind == "categorical" and bins.categories == ["0", "1", OTHER]
        else:
            assert bins.kind == "numeric"
    assert len(reference.fields["chol"].edges) >= 5  # quantile cut points of a spread-out measurement
    assert abs(sum(reference.fields["cp"].proportions) - 1) < 1e-9
    assert [s.name for s in reference.subgroups or []] == [s.name for s in spec.subgroups]
    assert set(reference.subgroup_high_rates["age_band"]) <= {"<45", "45-55", "55-65", "≥65", "missing"}
    assert set(reference.subgroup_high_rates["sex"]) == {"0", "1"}
    assert reference.rows > 400 and len(reference.scores) == reference.rows


def _heart_records(root: Path, *, rows: int, seed: int, shift: str | None) -> list[dict[str, Any]]:
    """Synthetic heart-disease records as serving validates them, with one column shifted if asked:
    `chol` up by 90 mg/dl, or `cp` with half the non-asymptomatic patients now asymptomatic (4)."""
    task = resolve_task(HEART)
    spec = task.source.spec
    typed = validate_task_table(spec, task.load(task.synthesize(root, rows=rows, seed=seed))).frame
    records = [{str(k): plain_value(v) for k, v in row.items()} for row in typed.to_dict("records")]
    rng = np.random.default_rng(seed)
    for record in records:
        if shift == "chol" and record["chol"] is not None:
            record["chol"] = min(record["chol"] + 90.0, 600.0)
        if shift == "cp" and record["cp"] != "4" and rng.random() < 0.5:
            record["cp"] = "4"
    return records


def capture_heart_traffic(captures: Path, model_dir: Path, records: list[dict[str, Any]], *, version: int) -> None:
    """Score `records` with the model as serving does and capture them as the API does."""
    spec = resolve_task(HEART).source.spec
    model = TaskServingModel.load(model_dir, spec=spec, name="clinrisk-heart-disease", version=version, checksum="")
    scored = model.score(records, bands=task_bands(Settings(), spec), top_k=5)
    capturer = Capturer(sink=ParquetCaptureSink(captures), keyer=IdKeyer(b"k" * 32), task="readmission")
    capture_task_scored(
        capturer, task=HEART, spec=spec, request_id="r", version=version, records=records, scored=scored,
        source="api",
    )  # fmt: skip
    assert capturer.flush() == len(records)


def _monitored(captures: Path, reference: MonitoringReference) -> MonitorResult:
    base = Settings()
    settings = base.model_copy(update={"monitoring": base.monitoring.model_copy(update={"task": HEART})})
    now = datetime.now(UTC)
    window = (now - timedelta(hours=1), now + timedelta(hours=1))
    [result] = run_monitor(read_window(captures, task=HEART, start=window[0], end=window[1]), {1: reference},
                           settings, window=window)  # fmt: skip
    return result


@pytest.mark.parametrize("shift", [None, "chol", "cp"])
def test_a_planted_shift_in_one_heart_column_is_found_and_named(
    heart_model: Path, tmp_path: Path, shift: str | None
) -> None:
    reference = MonitoringReference.load(heart_model)
    records = _heart_records(tmp_path / "data", rows=1200, seed=21, shift=shift)
    capture_heart_traffic(tmp_path / "captures", heart_model, records, version=1)
    result = _monitored(tmp_path / "captures", reference)
    assert (result.task, result.published, result.rows) == (HEART, True, 1200)
    assert result.drifted_fields == ([] if shift is None else [shift])
    fields = {f.field: f for f in result.fields}
    assert set(fields) == set(reference.fields)
    if shift is None:
        assert all(f.psi < f.critical for f in result.fields)
    else:
        assert fields[shift].psi > 0.25
    # The age bands are binned as the task file says, on both sides.
    assert set(result.subgroup_high_rates["age_band"]) == set(reference.subgroup_high_rates["age_band"])
    assert {"<45", "45-55", "55-65", "≥65"} <= set(result.subgroup_high_rates["age_band"])
    assert result.estimated_auc is not None and 0.5 < result.estimated_auc < 1


def test_monitor_run_and_report_take_a_task_its_champion_and_its_own_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI on a pipeline home: heart disease trains and promotes, its shifted traffic is
    captured, and `monitor run --task heart-disease` finds the shift against its champion's reference,
    alarms on its own, and retrains heart disease; readmission (no champion here) sees nothing."""
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLINRISK_BOOTSTRAP_ROUNDS", "50")
    monkeypatch.setattr(cli, "DEFAULT_SYNTH_ROWS", 800)  # the retraining's synthetic cohort, kept small
    data = resolve_task(HEART).synthesize(tmp_path / "train", rows=800, seed=5)  # promotes (test_task_pipeline)
    trained = runner.invoke(app, ["pipeline", "run", "--task", HEART, "--data", str(data[0]), "--json"])
    assert trained.exit_code == 0, trained.output
    settings = Settings()
    store = build_store(settings)
    [champion] = monitored_versions(store, HEART)
    (tmp_path / "cache").mkdir()
    model_dir = fetch_model_files(store, champion, tmp_path / "cache")
    records = _heart_records(tmp_path / "traffic", rows=1000, seed=33, shift="chol")
    capture_heart_traffic(settings.captures_root, model_dir, records, version=champion.version)
    _write_capture_key(settings)
    outcomes = _outcome_file(tmp_path / "outcomes.csv", records[:600])
    ingested = runner.invoke(app, ["outcomes", "ingest", "--task", HEART, str(outcomes)])
    assert ingested.exit_code == 0, ingested.output
    assert "600 rows read, 600 stored; 600 match a captured prediction, 0 match none" in ingested.stderr

    page = tmp_path / "heart.html"  # the report reads, publishes nothing and alarms on nothing
    report = runner.invoke(app, ["monitor", "report", "--task", HEART, "--window", "1h", "-o", str(page)])
    assert report.exit_code == 0, report.output
    assert f"1,000 records, model v{champion.version}" in report.stderr
    html = page.read_text(encoding="utf-8")
    assert f"clinrisk monitoring: {HEART}, model v{champion.version}" in html
    assert "<div class=label>Drifted fields</div><div class=value>chol</div>" in html
    # The champion's realized performance on the joined outcomes, with the task's own subgroups.
    assert re.search(r"<div class=label>Realized AUC</div><div class=value>0\.\d{3} \(600 outcomes\)</div>", html)
    assert re.search(r"<div class=label>Observed / expected</div><div class=value>\d\.\d\d</div>", html)
    assert re.search(r"<div class=label>Subgroup AUC gap</div><div class=value>sex 0\.\d{3}, age_band ", html)

    run = runner.invoke(app, ["monitor", "run", "--task", HEART, "--window", "1h", "--json"])
    assert run.exit_code == 0, run.output
    [result] = json.loads(run.stdout)
    assert (result["task"], result["model_version"], result["rows"]) == (HEART, champion.version, 1000)
    assert result["drifted_fields"] == ["chol"]
    assert f"alarm feature-drift (v{champion.version}) → ALARM" in run.stderr
    assert f"retraining {HEART} (drift-alarm):" in run.stderr  # the drifted task's own retraining
    assert json.loads((settings.monitor_dir / HEART / "alarms.json").read_text())["feature-drift/v1"] == "ALARM"
    assert not (settings.monitor_dir / "alarms.json").exists()  # readmission's alarms are untouched
    assert len(monitored_versions(store)) == 0  # no readmission champion: its monitor has nothing to do


# --------------------------------------------------------------------------- outcomes of a task


def _outcome_file(path: Path, records: list[dict[str, Any]]) -> Path:
    """The task's outcome file: its record id and its target, as the hospital records them."""
    lines = ["row_id,num", *(f"{r['row_id']},{int(r['num'])}" for r in records)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _heart_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A home whose id key is the one `capture_heart_traffic` keys with."""
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    settings = Settings()
    _write_capture_key(settings)
    return settings


def _write_capture_key(settings: Settings) -> None:
    settings.id_key_path.parent.mkdir(parents=True, exist_ok=True)
    settings.id_key_path.write_text((b"k" * 32).hex())
    settings.id_key_path.chmod(0o600)


def test_heart_outcomes_join_its_captures_and_the_realized_auc_is_close_to_the_estimate(
    heart_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted good model on fresh synthetic patients: `outcomes ingest --task heart-disease` keys the
    task's record ids as capture did, every outcome joins, and `monitor run --task` reports a realized
    AUC within noise of CBPE's estimate, observed/expected near 1, and the task's own subgroup gaps."""
    settings = _heart_home(tmp_path, monkeypatch)
    records = _heart_records(tmp_path / "traffic", rows=1200, seed=41, shift=None)
    capture_heart_traffic(settings.captures_root, heart_model, records, version=1)
    outcomes = _outcome_file(tmp_path / "heart-outcomes.csv", records)

    ingested = runner.invoke(app, ["outcomes", "ingest", "--task", HEART, str(outcomes), "--json"])
    assert ingested.exit_code == 0, ingested.output
    report = json.loads(ingested.stdout)
    assert (report["rows_read"], report["rows_stored"], report["matched"], report["bad_rows"]) == (1200, 1200, 1200, [])
    assert not (settings.outcomes_root / "task=readmission").exists()  # stored under the task's own partition

    from clinrisk.local.monitoring import realized_over_outcome_window
    from clinrisk.monitoring.window import utc_now

    monitored = settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update={"task": HEART})})
    [realized] = realized_over_outcome_window(monitored, now=utc_now() + timedelta(minutes=1))
    estimate = _monitored(settings.captures_root, MonitoringReference.load(heart_model)).estimated_auc
    positives = sum(r["num"] > 0 for r in records)
    assert (realized.task, realized.outcomes, realized.positives) == (HEART, 1200, positives)
    assert realized.auc is not None and estimate is not None
    assert realized.auc > 0.7 and abs(realized.auc - estimate) < 0.04, (realized.auc, estimate)
    assert realized.observed_to_expected is not None and 0.85 < realized.observed_to_expected < 1.15
    assert set(realized.subgroup_auc_gap) == {"sex", "age_band", "site"}
    assert realized.subgroup_auc_gap["sex"] is not None  # two sexes, each with both classes

    run = runner.invoke(app, ["monitor", "run", "--task", HEART, "--window", "1h"])
    assert run.exit_code == 0, run.output
    assert "model v1 realized on 1,200 outcomes: AUC " in run.stderr
    metrics = [json.loads(line) for line in (settings.monitor_dir / "metrics.jsonl").read_text().splitlines()]
    [published] = [m for m in metrics if "RealizedAUC" in m]
    assert (published["task"], published["model_version"]) == (HEART, "1")
    assert abs(published["RealizedAUC"] - realized.auc) < 1e-9 and "SubgroupAUCGap_sex" in published


READMISSION_OUTCOMES = "encounter_id,readmitted\n11,<30\n12,NO\n"


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("num\n0\n2\n", "no column row_id"),
        ("row_id\nsecret-id-1\n", "no column num"),
        ("row_id,num\nsecret-id-1,0\nsecret-id-2,9\n", "column 'num': outside"),
        ("row_id,num\nsecret-id-1,0\nsecret-id-2,many\n", "column 'num': a value that is not a number"),
        (READMISSION_OUTCOMES, "no column row_id, num; it is an outcome file of task 'readmission'"),
    ],
    ids=["no-id-column", "no-target-column", "target-out-of-range", "target-not-a-number", "another-tasks-file"],
)
def test_a_bad_heart_outcome_file_gets_one_line_and_exit_2_naming_the_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, named: str
) -> None:
    settings = _heart_home(tmp_path, monkeypatch)
    path = tmp_path / "outcomes.csv"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["outcomes", "ingest", "--task", HEART, str(path)])
    assert result.exit_code == 2, result.output
    assert named in result.output and len(result.output.strip().splitlines()) == 1
    for value in ("secret-id", "many", ",9"):  # never a value
        assert value not in result.output
    assert not settings.outcomes_root.exists()  # nothing stored
