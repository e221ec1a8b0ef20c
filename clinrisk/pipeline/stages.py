"""The retraining stages as functions: typed input, ports as parameters, typed output.

The local pipeline calls them in order; in the cloud, the state machine's Lambda handlers call
the same functions (`lambdas/evaluate`, `lambdas/promote`), and its training task runs the
same script that `Trainer` runs here. Data moves between stages through the object store, as
it does between states in S3.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from clinrisk.errors import ClinriskError
from clinrisk.pipeline.contracts import (
    EvaluateInput,
    EvaluateOutput,
    Ports,
    PromoteInput,
    PromoteOutput,
    RunInput,
    TrainOutput,
    ValidatedRun,
    ValidateInput,
    ValidateOutput,
    run_prefix,
)
from clinrisk.ports import ObjectNotFoundError, ObjectStore, TrainingJob
from clinrisk.registry.model_registry import ARTIFACT_PREFIX_TAG, CHECKSUM_TAG, Registry, StaleChampionError
from clinrisk.settings import Settings
from clinrisk.uris import s3_key

# The validate and evaluate stages import what they need (pandas and the modules built on it)
# inside their functions: the promote Lambda imports this module too, and its bundle has no
# pandas (see cdk_app.bundling.promote_function).
if TYPE_CHECKING:
    from clinrisk.evaluation.evaluate import EvaluationReport
    from clinrisk.model.risk_model import RiskModel
    from clinrisk.model.training import TrainingSummary

# --------------------------------------------------------------------------- validate


def validate_data(run: RunInput, data_path: Path, *, store: ObjectStore, settings: Settings) -> ValidateOutput:
    """Strict validation, then a patient-grouped split written as one gzip CSV file per channel
    (`clinrisk.data.tables.CHANNEL_SUFFIX`): pandas reads it without pyarrow, in the evaluate Lambda
    and in the SageMaker training container alike."""
    from clinrisk.data.splits import CHANNELS, split_by_patient
    from clinrisk.data.tables import CHANNEL_SUFFIX, write_table
    from clinrisk.data.validation import load_encounters

    frame = load_encounters(data_path)
    splits = split_by_patient(
        frame, seed=settings.seed, test=settings.test_fraction, validation=settings.validation_fraction
    )
    channels = {name: f"{run_prefix(run.run_id)}/channels/{name}" for name in CHANNELS}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CHANNELS:
            local = Path(tmp) / name / f"{name}{CHANNEL_SUFFIX}"
            write_table(splits[name], local)
            store.upload_dir(local.parent, channels[name])
    return ValidateOutput(rows={"input": len(frame), **{n: len(s) for n, s in splits.items()}}, channels=channels)


# The cloud's validate state (lambdas/validate). Its event is the ValidateData state's Payload:
# the run id (the execution name), the execution input as given, and the deployment's default
# data file. The execution input is untrusted until it has passed ExecutionInput.


class DataNotFoundError(ObjectNotFoundError):
    """The data file the run was asked to validate is not in the data bucket; nothing was trained."""


def validate_stored_data(
    request: ValidateInput, *, data: ObjectStore, store: ObjectStore, settings: Settings
) -> ValidatedRun:
    """`validate_data` on a copy of the data file (Lambda has /tmp, not the bucket, as a disk);
    the channels go to `store`, the artifacts bucket."""
    key = s3_key(request.data_uri)
    try:
        raw = data.read_bytes(key)
    except ObjectNotFoundError:
        raise DataNotFoundError(f"no data file at {request.data_uri}; nothing was trained") from None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PurePosixPath(key).name
        local.write_bytes(raw)
        validated = validate_data(request.run(), local, store=store, settings=settings)
    return ValidatedRun(
        **validated.model_dump(),
        run_id=request.run_id,
        trigger=request.request.trigger,
        approval_requested=request.request.approval_requested,
        task=request.request.task,
    )


# --------------------------------------------------------------------------- train


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


def evaluate_trained(request: EvaluateInput, *, ports: Ports, settings: Settings) -> EvaluateOutput:
    """The evaluate Lambda's stage: put the training job's model directory at `model_prefix`
    (unpacking `model_archive`, when given), then `evaluate` as the local pipeline does, so the
    cloud and local runs register and serve the same layout."""
    if request.model_archive is not None:
        from clinrisk.model.archive import publish_archive

        publish_archive(ports.store, request.model_archive, request.model_prefix)
    return evaluate(request, ports=ports, settings=settings)


def load_registered_model(store: ObjectStore, artifact_prefix: str, checksum: str, into: Path) -> RiskModel:
    """Download a registered model directory and check it is byte for byte what was registered."""
    from clinrisk.checksums import directory_checksum
    from clinrisk.model.risk_model import RiskModel

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
    from clinrisk.checksums import directory_checksum
    from clinrisk.data.tables import read_table
    from clinrisk.data.validation import ensure_valid
    from clinrisk.evaluation.evaluate import TestSet, evaluate_scores
    from clinrisk.model.held_out import score_test_set
    from clinrisk.model.risk_model import SUMMARY_FILE
    from clinrisk.model.training import TrainingSummary
    from clinrisk.registry.tracking import Candidate, record_candidate

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
        version = record_candidate(
            ports.registry, settings.experiment_name, settings.experiment_artifact_location, candidate
        )
    return EvaluateOutput(
        model_version=version,
        gate_passed=report.gate.passed,
        gate_reasons=report.gate.reasons,
        champion_before=champion_version,
        metrics=_headline(report, summary),
    )


# --------------------------------------------------------------------------- promote


def promote(request: PromoteInput, *, registry: Registry) -> PromoteOutput:
    try:
        pointer = registry.promote(request.model_version, expected_champion=request.expected_champion)
    except StaleChampionError as error:
        return PromoteOutput(outcome="stale", champion=registry.champion_version(), detail=str(error))
    return PromoteOutput(
        outcome="promoted", champion=pointer.version, detail=f"version {pointer.version} is the champion"
    )
