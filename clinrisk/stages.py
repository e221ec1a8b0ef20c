"""The retraining stages as functions: typed input, ports as parameters, typed output.

The local pipeline calls them in order; in the cloud, the state machine's Lambda handlers call
the same functions (`lambdas/evaluate`, `lambdas/promote`), and its training task runs the
same script that `Trainer` runs here. Data moves between stages through the object store, as
it does between states in S3.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, Field

from clinrisk.data import read_table, write_table
from clinrisk.errors import ClinriskError
from clinrisk.evaluation import EvaluationReport, TestSet, evaluate_scores, score_test_set
from clinrisk.model import SUMMARY_FILE, RiskModel, directory_checksum
from clinrisk.ports import ObjectStore, TrainingJob
from clinrisk.registry import ARTIFACT_PREFIX_TAG, CHECKSUM_TAG, Registry, StaleChampionError
from clinrisk.runtime import Ports
from clinrisk.settings import Settings
from clinrisk.splits import CHANNELS, split_by_patient
from clinrisk.training import TrainingSummary
from clinrisk.validation import ensure_valid, load_encounters

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# An object-store prefix: '/'-separated names, each starting with a letter, digit or '_' (so no
# '.' or '..' segment and nothing absolute).
PREFIX_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


class RunInput(BaseModel):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    trigger: str = Field("manual", max_length=64)


# --------------------------------------------------------------------------- validate


class ValidateOutput(BaseModel):
    rows: dict[str, int]
    channels: dict[str, str] = Field(description="Object-store prefix of each channel.")


def validate_data(run: RunInput, data_path: Path, *, store: ObjectStore, settings: Settings) -> ValidateOutput:
    """Strict validation, then a patient-grouped split written as one Parquet file per channel."""
    frame = load_encounters(data_path)
    splits = split_by_patient(
        frame, seed=settings.seed, test=settings.test_fraction, validation=settings.validation_fraction
    )
    channels = {name: f"{run_prefix(run.run_id)}/channels/{name}" for name in CHANNELS}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CHANNELS:
            local = Path(tmp) / name / f"{name}.parquet"
            write_table(splits[name], local)
            store.upload_dir(local.parent, channels[name])
    return ValidateOutput(rows={"input": len(frame), **{n: len(s) for n, s in splits.items()}}, channels=channels)


class ValidateInput(RunInput):
    """The cloud's validate state: the encounters file is an object in the data store."""

    data_key: str = Field(
        "encounters/current.csv", pattern=PREFIX_PATTERN, description="Object key of the encounters (CSV or Parquet)."
    )


def validate_stored_data(request: ValidateInput, *, store: ObjectStore, settings: Settings) -> ValidateOutput:
    """`validate_data` on a copy of the stored file (Lambda has /tmp, not the bucket, as a disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PurePosixPath(request.data_key).name
        local.write_bytes(store.read_bytes(request.data_key))
        return validate_data(request, local, store=store, settings=settings)


# --------------------------------------------------------------------------- train


class TrainOutput(BaseModel):
    model_prefix: str


def train(run: RunInput, validated: ValidateOutput, *, ports: Ports, hyperparameters: dict[str, Any]) -> TrainOutput:
    job = TrainingJob(
        name=f"clinrisk-{run.run_id}",
        channels={name: validated.channels[name] for name in ("train", "validation")},
        model_prefix=f"{run_prefix(run.run_id)}/model",
        output_prefix=f"{run_prefix(run.run_id)}/output",
        hyperparameters=hyperparameters,
    )
    ports.trainer.train(job)
    return TrainOutput(model_prefix=job.model_prefix)


# --------------------------------------------------------------------------- evaluate


class EvaluateInput(RunInput):
    model_prefix: str = Field(pattern=PREFIX_PATTERN)
    test_prefix: str = Field(pattern=PREFIX_PATTERN)


class EvaluateOutput(BaseModel):
    model_version: int
    gate_passed: bool
    gate_reasons: list[str]
    champion_before: int | None
    metrics: dict[str, float | None]


def load_registered_model(store: ObjectStore, artifact_prefix: str, checksum: str, into: Path) -> RiskModel:
    """Download a registered model directory and check it is byte for byte what was registered."""
    store.download_dir(artifact_prefix, into)
    if directory_checksum(into) != checksum:
        raise ClinriskError(f"model at {store.uri(artifact_prefix)} does not match its registered checksum")
    return RiskModel.load(into)


def _champion(registry: Registry, store: ObjectStore, into: Path) -> tuple[int | None, RiskModel | None]:
    version = registry.champion_version()
    if version is None:
        return None, None
    tags = registry.client.get_model_version(registry.model_name, str(version)).tags
    return version, load_registered_model(store, tags[ARTIFACT_PREFIX_TAG], tags[CHECKSUM_TAG], into)


def _headline(report: EvaluationReport, summary: TrainingSummary) -> dict[str, float | None]:
    c = report.candidate
    return {
        "test_prevalence": c.prevalence,
        "test_roc_auc": c.roc_auc,
        "test_roc_auc_ci_low": c.roc_auc_ci_low,
        "test_roc_auc_ci_high": c.roc_auc_ci_high,
        "test_pr_auc": c.pr_auc,
        "test_brier": c.brier,
        "test_ece": c.ece,
        "test_sensitivity": c.at_threshold.sensitivity,
        "test_specificity": c.at_threshold.specificity,
        "test_ppv": c.at_threshold.ppv,
        "test_f1": c.at_threshold.f1,
        "baseline_test_roc_auc": report.logistic_baseline.roc_auc,
        "champion_test_roc_auc": report.champion.roc_auc if report.champion else None,
        "validation_roc_auc": summary.validation.roc_auc,
    }


def evaluate(request: EvaluateInput, *, ports: Ports, settings: Settings) -> EvaluateOutput:
    """Score the candidate, its baseline and the champion on the test patients; gate; register
    the candidate as a new version (alias `challenger`) tagged with the gate's decision."""
    from clinrisk.tracking import Candidate, record_candidate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ports.store.download_dir(request.model_prefix, work / "model")
        ports.store.download_dir(request.test_prefix, work / "test")
        test_files = sorted((work / "test").iterdir())
        test = TestSet.from_encounters(ensure_valid(read_table(test_files[0])))
        champion_version, champion = _champion(ports.registry, ports.store, work / "champion")
        scored = score_test_set(test, work / "model", champion)
        report = evaluate_scores(scored, settings, champion_version)
        summary = TrainingSummary.model_validate_json((work / "model" / SUMMARY_FILE).read_text())
        candidate = Candidate(
            run_name=request.run_id,
            model_dir=work / "model",
            artifact_prefix=request.model_prefix,
            checksum=directory_checksum(work / "model"),
            summary=summary,
            report=report,
            scored=scored,
            trigger=request.trigger,
        )
        version = record_candidate(ports.registry, settings.experiment_name, settings.artifact_root.as_uri(), candidate)
    return EvaluateOutput(
        model_version=version,
        gate_passed=report.gate.passed,
        gate_reasons=report.gate.reasons,
        champion_before=champion_version,
        metrics=_headline(report, summary),
    )


# --------------------------------------------------------------------------- promote


class PromoteInput(BaseModel):
    model_version: int = Field(ge=1)
    expected_champion: int | None = Field(
        description="The champion the version was evaluated against; promotion is refused if it changed."
    )


class PromoteOutput(BaseModel):
    outcome: Literal["promoted", "stale"]
    champion: int | None
    detail: str


def promote(request: PromoteInput, *, registry: Registry) -> PromoteOutput:
    try:
        pointer = registry.promote(request.model_version, expected_champion=request.expected_champion)
    except StaleChampionError as error:
        return PromoteOutput(outcome="stale", champion=registry.champion_version(), detail=str(error))
    return PromoteOutput(
        outcome="promoted", champion=pointer.version, detail=f"version {pointer.version} is the champion"
    )
