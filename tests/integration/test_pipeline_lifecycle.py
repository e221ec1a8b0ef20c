"""The local pipeline with real MLflow: register, gate, promote, compare with the champion,
reject, roll back; and what the registry and the serving pointer look like after each."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from clinrisk.checksums import directory_checksum
from clinrisk.data.splits import split_by_patient
from clinrisk.data.tables import write_table
from clinrisk.data.task_binding import resolve_task
from clinrisk.data.validation import ensure_valid
from clinrisk.model.risk_model import RiskModel
from clinrisk.pipeline.contracts import Ports
from clinrisk.pipeline.local import PipelineResult, run_pipeline
from clinrisk.registry.model_registry import CHALLENGER, CHAMPION, GATE_REASONS_TAG, GATE_TAG, PREVIOUS_CHAMPION
from clinrisk.registry.serving_pointer import ServingPointer, read_pointer
from clinrisk.registry.tracking import TRACKING_URI_VARIABLE, tracking_at
from clinrisk.runtime import build_ports
from clinrisk.settings import GateRules, Settings
from tests.conftest import PIPELINE_ROWS, cohort, local_settings

pytestmark = pytest.mark.integration


@dataclass
class History:
    settings: Settings
    ports: Ports
    first: PipelineResult
    pointer_after_first: ServingPointer
    rejected: PipelineResult
    pointer_after_rejected: ServingPointer
    second: PipelineResult
    data: Path


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("lifecycle")
    settings = local_settings(root / "home")
    ports = build_ports(settings)
    data = root / "first.parquet"
    write_table(cohort(PIPELINE_ROWS, 7), data)
    first = run_pipeline(data, settings, ports)
    pointer_after_first = read_pointer(ports.store)
    strict = settings.model_copy(update={"gate": GateRules(auc_floor=0.99)})
    rejected = run_pipeline(data, strict, build_ports(strict))
    pointer_after_rejected = read_pointer(ports.store)
    second_data = root / "second.parquet"
    write_table(cohort(PIPELINE_ROWS, 8), second_data)
    second = run_pipeline(second_data, settings, ports)
    assert pointer_after_first is not None
    assert pointer_after_rejected is not None
    return History(settings, ports, first, pointer_after_first, rejected, pointer_after_rejected, second, data)


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def test_first_run_registers_and_promotes_version_1(history: History) -> None:
    first = history.first
    assert first.outcome == "promoted"
    assert first.model_version == 1
    assert first.champion_before is None
    assert first.champion_after == 1
    assert first.metrics["test_roc_auc"] is not None
    assert first.metrics["test_roc_auc"] > 0.65
    assert list(first.stage_seconds) == ["validate", "train", "evaluate", "gate", "promote", "notify"]
    assert first.rows["train"] + first.rows["validation"] + first.rows["test"] == first.rows["input"]


def test_pointer_names_the_champion_and_its_exact_files(history: History) -> None:
    pointer = history.pointer_after_first
    assert pointer.version == 1
    assert pointer.model_uri == f"models:/{history.settings.model_name}/1"
    stored_model = history.settings.store_root / pointer.artifact_prefix
    assert directory_checksum(stored_model) == pointer.checksum
    assert RiskModel.load(stored_model).schema.names


def test_run_logs_metrics_plots_report_card_and_a_loadable_model(history: History) -> None:
    client = _client(history.settings)
    version = client.get_model_version(history.settings.model_name, "1")
    assert version.run_id is not None
    run = client.get_run(version.run_id)
    for metric in ("test_roc_auc", "test_roc_auc_ci_low", "test_pr_auc", "test_brier", "test_ece",
                   "test_threshold_sensitivity", "baseline_test_roc_auc", "validation_roc_auc"):  # fmt: skip
        assert metric in run.data.metrics, metric
    assert run.data.params["calibration"] in {"none", "platt", "isotonic"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"evaluation.json", "model_card.md", "training_summary.json"} <= artifacts
    assert {f"plots/{n}.png" for n in ("roc_curve", "pr_curve", "calibration", "shap_summary")} <= plots

    with tracking_at(history.settings.tracking_uri):
        pyfunc = mlflow.pyfunc.load_model(f"models:/{history.settings.model_name}/1")
    assert pyfunc.metadata.signature is not None
    assert pyfunc.metadata.get_input_schema().input_names()[:2] == ["encounter_id", "patient_nbr"]
    test = split_by_patient(ensure_valid(cohort(PIPELINE_ROWS, 7)), seed=42, test=0.2, validation=0.2)["test"]
    encounters = resolve_task().examples(test).rows.drop(columns=["readmitted"]).head(50)
    from_mlflow = pyfunc.predict(encounters)["probability"].to_numpy()
    direct = RiskModel.load(history.settings.store_root / history.pointer_after_first.artifact_prefix)
    np.testing.assert_allclose(from_mlflow, direct.predict(encounters), rtol=0, atol=1e-12)


def test_rejected_version_is_registered_tagged_and_never_promoted(history: History) -> None:
    rejected = history.rejected
    assert rejected.outcome == "rejected"
    assert rejected.model_version == 2
    assert rejected.champion_before == 1
    assert rejected.champion_after == 1
    assert any("floor 0.990" in reason for reason in rejected.gate_reasons)
    assert "promote" not in rejected.stage_seconds
    version = _client(history.settings).get_model_version(history.settings.model_name, "2")
    assert version.tags[GATE_TAG] == "rejected"
    assert "floor" in json.loads(version.tags[GATE_REASONS_TAG])[0]
    assert history.pointer_after_rejected == history.pointer_after_first


def test_second_run_is_compared_with_the_champion_and_follows_the_gate(history: History) -> None:
    second = history.second
    assert second.model_version == 3
    assert second.champion_before == 1
    assert second.metrics["champion_test_roc_auc"] is not None
    assert any("champion" in reason for reason in second.gate_reasons)
    expected = "promoted" if second.gate_passed else "rejected"
    assert second.outcome == expected
    assert second.champion_after == (3 if second.gate_passed else 1)
    model = _client(history.settings).get_registered_model(history.settings.model_name)
    assert int(model.aliases[CHAMPION]) == second.champion_after  # MLflow returns str or int by version


def test_challenger_alias_marks_the_newest_unpromoted_candidate(history: History) -> None:
    aliases = _client(history.settings).get_registered_model(history.settings.model_name).aliases
    if history.second.outcome == "promoted":
        assert int(aliases[PREVIOUS_CHAMPION]) == 1
        # v3 was the challenger until promoted; v2 was rejected, so nothing is waiting.
        assert CHALLENGER not in aliases
    else:
        assert int(aliases[CHALLENGER]) == 3


def test_manual_promotion_and_rollback_move_alias_and_pointer_together(history: History) -> None:
    registry = history.ports.registry
    before = registry.champion_version()
    assert before is not None
    promoted = registry.promote_manually(2)
    assert promoted.version == 2
    assert registry.champion_version() == 2
    assert read_pointer(history.ports.store) == promoted
    rolled_back = registry.rollback()
    assert rolled_back.version == before
    assert registry.champion_version() == before
    pointer = read_pointer(history.ports.store)
    assert pointer is not None
    assert pointer.version == before
    assert pointer.previous_version == 2


def test_runs_leave_no_tracking_uri_behind_in_the_process_environment(history: History) -> None:
    # A leaked MLFLOW_TRACKING_URI would send every later registry in the process, and every
    # subprocess, to this run's store.
    assert TRACKING_URI_VARIABLE not in os.environ


def test_every_run_sent_a_notification(history: History) -> None:
    lines = [json.loads(line) for line in history.settings.outbox_path.read_text().splitlines()]
    subjects = [line["subject"] for line in lines]
    assert any("v1 promoted" in s for s in subjects)
    assert any("v2 rejected by the gate" in s for s in subjects)
    assert len(subjects) == 3
