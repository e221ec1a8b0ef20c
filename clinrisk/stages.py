"""The retraining stages as functions: typed input, ports as parameters, typed output.

The local pipeline calls them in order; in the cloud, the state machine's Lambda handlers call
the same functions (`lambdas/evaluate`, `lambdas/promote`), and its training task runs the
same script that `Trainer` runs here. Data moves between stages through the object store, as
it does between states in S3.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectNotFoundError, ObjectStore, TrainingJob
from clinrisk.registry import ARTIFACT_PREFIX_TAG, CHECKSUM_TAG, Registry, StaleChampionError
from clinrisk.runtime import Ports
from clinrisk.settings import Settings

# The validate and evaluate stages import what they need (pandas and the modules built on it)
# inside their functions: the promote Lambda imports this module too, and its bundle has no
# pandas (see clinrisk.packaging.promote_function).
if TYPE_CHECKING:
    from clinrisk.evaluation import EvaluationReport
    from clinrisk.model import RiskModel
    from clinrisk.training import TrainingSummary

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
    """Strict validation, then a patient-grouped split written as one gzip CSV file per channel
    (`clinrisk.data.CHANNEL_SUFFIX`): pandas reads it without pyarrow, in the evaluate Lambda
    and in the SageMaker training container alike."""
    from clinrisk.data import CHANNEL_SUFFIX, write_table
    from clinrisk.splits import CHANNELS, split_by_patient
    from clinrisk.validation import load_encounters

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

Trigger = Literal["manual", "schedule", "drift-alarm"]  # clinrisk.orchestration.TRIGGERS
# `clinrisk-<run id>` names the SageMaker training job (letters, digits, hyphens, ending in a
# letter or digit, 63 characters at most), so a cloud run id is stricter than RUN_ID_PATTERN.
CLOUD_RUN_ID_PATTERN = r"^[A-Za-z0-9](-*[A-Za-z0-9])*$"
CLOUD_RUN_ID_MAX_LENGTH = 63 - len("clinrisk-")
# s3://<bucket>/<key>: a DNS-style bucket name, and a key that PREFIX_PATTERN accepts.
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/" + PREFIX_PATTERN.removeprefix("^")


def s3_bucket(uri: str) -> str:
    return urlsplit(uri).netloc


def s3_key(uri: str) -> str:
    return urlsplit(uri).path.removeprefix("/")


class DataNotFoundError(ObjectNotFoundError):
    """The data file the run was asked to validate is not in the data bucket; nothing was trained."""


class ExecutionInput(BaseModel):
    """What starts a run: the EventBridge schedule, the drift-alarm rule, `clinrisk pipeline start`."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option must fail, not be ignored

    trigger: Trigger
    data_uri: str | None = Field(
        None,
        pattern=S3_URI_PATTERN,
        description="Encounters file (CSV or Parquet) in the data bucket; default: the deployment's.",
    )
    approval_requested: bool = Field(
        False, description="Ask for a human approval although the deployment does not require one (never waives one)."
    )
    run_id: str | None = Field(None, description="The execution name, when the starter repeats it; must equal it.")


class ValidateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=CLOUD_RUN_ID_PATTERN, max_length=CLOUD_RUN_ID_MAX_LENGTH)
    default_data_uri: str = Field(pattern=S3_URI_PATTERN, description="The deployment's TrainingDataUri.")
    request: ExecutionInput

    @field_validator("request")
    @classmethod
    def _fits_the_run(cls, request: ExecutionInput, info: ValidationInfo) -> ExecutionInput:
        # Messages name the fields and the configured bucket, never a value from the input.
        if request.run_id is not None and request.run_id != info.data.get("run_id"):
            raise PydanticCustomError("run_id_mismatch", "request.run_id must equal the execution name")
        default = info.data.get("default_data_uri")
        if request.data_uri is not None and default is not None and s3_bucket(request.data_uri) != s3_bucket(default):
            raise PydanticCustomError(
                "foreign_bucket",
                "request.data_uri must name an object in the data bucket {bucket}",
                {"bucket": s3_bucket(default)},
            )
        return request

    @property
    def data_uri(self) -> str:
        return self.request.data_uri or self.default_data_uri

    def run(self) -> RunInput:
        return RunInput(run_id=self.run_id, trigger=self.request.trigger)


class ValidatedRun(ValidateOutput):
    """The validate Lambda's result: what the ValidateData state's ResultSelector picks."""

    run_id: str
    trigger: Trigger
    approval_requested: bool


def data_store(settings: Settings, bucket: str) -> ObjectStore:
    """The data bucket, read only. The ports hold the artifacts bucket; only the aws backend has a
    data bucket (locally, `clinrisk pipeline run` validates a file path)."""
    if settings.backend != "aws":
        raise ClinriskError("the validate Lambda reads the data bucket, which only the aws backend has")
    from clinrisk.adapters.aws import S3ObjectStore

    return S3ObjectStore(bucket)


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
    )


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
    model_config = ConfigDict(extra="forbid")  # the Evaluate state's Payload and this model agree

    model_prefix: str = Field(pattern=PREFIX_PATTERN)
    test_prefix: str = Field(pattern=PREFIX_PATTERN)
    model_archive: str | None = Field(
        None,
        pattern=S3_URI_PATTERN,
        description="The training job's model.tar.gz (ModelArtifacts.S3ModelArtifacts) in the artifacts bucket; "
        "when set, it is unpacked to model_prefix before the evaluation.",
    )


def evaluate_trained(request: EvaluateInput, *, ports: Ports, settings: Settings) -> EvaluateOutput:
    """The evaluate Lambda's stage: put the training job's model directory at `model_prefix`
    (unpacking `model_archive`, when given), then `evaluate` as the local pipeline does, so the
    cloud and local runs register and serve the same layout."""
    if request.model_archive is not None:
        from clinrisk.model_archive import publish_archive

        publish_archive(ports.store, request.model_archive, request.model_prefix)
    return evaluate(request, ports=ports, settings=settings)


class EvaluateOutput(BaseModel):
    model_version: int
    gate_passed: bool
    gate_reasons: list[str]
    champion_before: int | None
    metrics: dict[str, float | None]


def load_registered_model(store: ObjectStore, artifact_prefix: str, checksum: str, into: Path) -> RiskModel:
    """Download a registered model directory and check it is byte for byte what was registered."""
    from clinrisk.checksums import directory_checksum
    from clinrisk.model import RiskModel

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
    from clinrisk.data import read_table
    from clinrisk.evaluation import TestSet, evaluate_scores, score_test_set
    from clinrisk.model import SUMMARY_FILE
    from clinrisk.tracking import Candidate, record_candidate
    from clinrisk.training import TrainingSummary
    from clinrisk.validation import ensure_valid

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
