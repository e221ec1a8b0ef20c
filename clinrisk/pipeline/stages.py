"""The retraining stages as functions: typed input, ports as parameters, typed output.

The local pipeline calls them in order; in the cloud, the state machine's Lambda handlers call
the same functions (`lambdas/evaluate`, `lambdas/promote`), and its training task runs the
same script that `Trainer` runs here. Data moves between stages through the object store, as
it does between states in S3.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
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
from clinrisk.settings import Settings, task_model_name
from clinrisk.uris import s3_key

# The validate and evaluate stages import what they need (pandas and the modules built on it)
# inside their functions: the promote Lambda imports this module too, and its bundle has no
# pandas (see cdk_app.bundling.promote_function).
if TYPE_CHECKING:
    from clinrisk.data.task_port import Task
    from clinrisk.evaluation.evaluate import EvaluationReport
    from clinrisk.model.risk_model import RiskModel
    from clinrisk.model.training import TrainingSummary
    from clinrisk.tasks.readmission.features import FeatureSchema

TASK_CHANNEL = "task"  # the run's task file, for the training job (SM_CHANNEL_TASK) and the evaluation

# --------------------------------------------------------------------------- validate


def validate_data(
    run: RunInput,
    data_path: Path | Sequence[Path],
    *,
    store: ObjectStore,
    settings: Settings,
    task: Task | None = None,
    data_uris: Sequence[str] | None = None,
) -> ValidateOutput:
    """Strict validation by the task's rules, then a patient-grouped split written as one gzip CSV
    file per channel (`clinrisk.data.tables.CHANNEL_SUFFIX`): pandas reads it without pyarrow, in the
    evaluate Lambda and in the SageMaker training container alike. The task file goes beside them
    (channel `task`), and the run's lineage (`clinrisk.pipeline.lineage`): each data file's URI
    (`data_uris`, or the file's own) and sha256, the task file's sha256 and the code version."""
    from clinrisk.data.splits import CHANNELS
    from clinrisk.data.tables import CHANNEL_SUFFIX
    from clinrisk.data.task_binding import resolve_task
    from clinrisk.pipeline.lineage import DataFile, Lineage, code_version, file_sha256, write_lineage

    task = task or resolve_task(run.task)
    paths = [data_path] if isinstance(data_path, Path) else list(data_path)
    frame = task.load(paths)
    splits = task.split(frame, seed=settings.seed, test=settings.test_fraction, validation=settings.validation_fraction)
    channels = {name: f"{run_prefix(run.run_id)}/channels/{name}" for name in (*CHANNELS, TASK_CHANNEL)}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CHANNELS:
            local = Path(tmp) / name / f"{name}{CHANNEL_SUFFIX}"
            local.parent.mkdir(parents=True)
            task.write_channel(splits[name], local)
            store.upload_dir(local.parent, channels[name])
        task_dir = Path(tmp) / TASK_CHANNEL
        task_dir.mkdir()
        (task_dir / f"{task.name}.yaml").write_bytes(task.source.path.read_bytes())
        store.upload_dir(task_dir, channels[TASK_CHANNEL])
    uris = list(data_uris) if data_uris is not None else [path.resolve().as_uri() for path in paths]
    lineage = Lineage(
        task=task.name,
        task_file_sha256=task.source.sha256,
        data=[DataFile(uri=uri, sha256=file_sha256(path)) for uri, path in zip(uris, paths, strict=True)],
        code_version=code_version(),
    )
    write_lineage(store, run_prefix(run.run_id), lineage)
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
        validated = validate_data(request.run(), local, store=store, settings=settings, data_uris=[request.data_uri])
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
        channels={name: validated.channels[name] for name in ("train", "validation", TASK_CHANNEL)},
        model_prefix=f"{run_prefix(run.run_id)}/model",
        output_prefix=f"{run_prefix(run.run_id)}/output",
        hyperparameters=hyperparameters,
    )
    ports.trainer.train(job)
    return TrainOutput(model_prefix=job.model_prefix)


# --------------------------------------------------------------------------- evaluate


def evaluate_trained(
    request: EvaluateInput, *, ports: Ports, settings: Settings, task: Task | None = None
) -> EvaluateOutput:
    """The evaluate Lambda's stage: put the training job's model directory at `model_prefix`
    (unpacking `model_archive`, when given), then `evaluate` as the local pipeline does, so the
    cloud and local runs register and serve the same layout."""
    if request.model_archive is not None:
        from clinrisk.model.archive import publish_archive

        publish_archive(ports.store, request.model_archive, request.model_prefix)
    return evaluate(request, ports=ports, settings=settings, task=task)


def load_registered_model(
    store: ObjectStore, artifact_prefix: str, checksum: str, into: Path, schema: FeatureSchema | None = None
) -> RiskModel:
    """Download a registered model directory and check it is byte for byte what was registered
    (and, given its task's `schema`, that it was trained on that task's features)."""
    from clinrisk.checksums import directory_checksum
    from clinrisk.model.risk_model import RiskModel

    store.download_dir(artifact_prefix, into)
    if directory_checksum(into) != checksum:
        raise ClinriskError(f"model at {store.uri(artifact_prefix)} does not match its registered checksum")
    return RiskModel.load(into) if schema is None else RiskModel.load(into, schema)


def _champion(
    registry: Registry, store: ObjectStore, into: Path, schema: FeatureSchema
) -> tuple[int | None, RiskModel | None]:
    version = registry.champion_version()
    if version is None:
        return None, None
    tags = registry.client.get_model_version(registry.model_name, str(version)).tags
    return version, load_registered_model(store, tags[ARTIFACT_PREFIX_TAG], tags[CHECKSUM_TAG], into, schema)


def run_task(store: ObjectStore, run: RunInput, into: Path) -> Task:
    """The task a run validated with: its file in the run's `task` channel, else by name (a run
    whose validate stage wrote no task file)."""
    from clinrisk.data.task_binding import resolve_task, task_for
    from clinrisk.taskspec.spec import load_task

    prefix = f"{run_prefix(run.run_id)}/channels/{TASK_CHANNEL}"
    if not store.exists(f"{prefix}/{run.task}.yaml"):
        return resolve_task(run.task)
    store.download_dir(prefix, into)
    return task_for(load_task(into / f"{run.task}.yaml"))


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


def evaluate(request: EvaluateInput, *, ports: Ports, settings: Settings, task: Task | None = None) -> EvaluateOutput:
    """Score the candidate, its baseline and the champion on the test patients; gate (with the
    task's overrides); register the candidate as a new version (alias `challenger`) of the task's
    registered model, tagged with the gate's decision and the run's lineage."""
    from clinrisk.checksums import directory_checksum
    from clinrisk.evaluation.evaluate import evaluate_scores
    from clinrisk.model.held_out import score_test_set
    from clinrisk.model.risk_model import SUMMARY_FILE
    from clinrisk.model.training import TrainingSummary
    from clinrisk.pipeline.lineage import read_lineage
    from clinrisk.registry.tracking import Candidate, record_candidate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        task = task or run_task(ports.store, request, work / "task")
        settings = task.settings(settings)
        registry = ports.registry.for_task(task.name, task.model_name(settings))
        ports.store.download_dir(request.model_prefix, work / "model")
        ports.store.download_dir(request.test_prefix, work / "test")
        test_files = sorted((work / "test").iterdir())
        test = task.examples(task.read_channel(test_files[:1]))
        champion_version, champion = _champion(registry, ports.store, work / "champion", task.feature_schema)
        scored = score_test_set(test, work / "model", champion, task.feature_schema)
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
            task=task,
            lineage=lineage.tags() if (lineage := read_lineage(ports.store, run_prefix(request.run_id))) else {},
        )
        version = record_candidate(
            registry, task.experiment_name(settings), settings.experiment_artifact_location, candidate
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
    """Promote in the registry of `request.task` (`registry` is the deployment's, or already the task's)."""
    registry = registry.for_task(request.task, task_model_name(request.task, registry.model_name))
    try:
        pointer = registry.promote(request.model_version, expected_champion=request.expected_champion)
    except StaleChampionError as error:
        return PromoteOutput(outcome="stale", champion=registry.champion_version(), detail=str(error))
    return PromoteOutput(
        outcome="promoted", champion=pointer.version, detail=f"version {pointer.version} is the champion"
    )
