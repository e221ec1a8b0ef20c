"""What the retraining stages take and return: the typed inputs and outputs of `clinrisk.pipeline.stages`,
the ports a stage runs with, and the patterns the cloud's state machine payloads must match.

The local pipeline and the cloud's Lambda handlers (`lambdas/validate`, `lambdas/evaluate`,
`lambdas/promote`) exchange these models; the state machine definition
(`state_machines/retraining.asl.json`) builds the same payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from clinrisk.ports import Notifier, ObjectStore, Trainer
from clinrisk.registry.model_registry import Registry
from clinrisk.settings import DEFAULT_TASK
from clinrisk.uris import PREFIX_PATTERN, S3_URI_PATTERN, s3_bucket

TASK_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"  # clinrisk.taskspec.spec: a task file's `name`


@dataclass(frozen=True)
class Ports:
    """What the stages run with; `clinrisk.runtime.build_ports` picks the adapters."""

    store: ObjectStore
    trainer: Trainer
    notifier: Notifier
    registry: Registry


RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


class RunInput(BaseModel):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    trigger: str = Field("manual", max_length=64)
    task: str = Field(DEFAULT_TASK, pattern=TASK_NAME_PATTERN, description="The task the run trains.")


class ValidateOutput(BaseModel):
    rows: dict[str, int]
    channels: dict[str, str] = Field(description="Object-store prefix of each channel.")


Trigger = Literal["manual", "schedule", "drift-alarm"]  # clinrisk.pipeline.orchestration.TRIGGERS
# `clinrisk-<run id>` names the SageMaker training job (letters, digits, hyphens, ending in a
# letter or digit, 63 characters at most), so a cloud run id is stricter than RUN_ID_PATTERN.
CLOUD_RUN_ID_PATTERN = r"^[A-Za-z0-9](-*[A-Za-z0-9])*$"
CLOUD_RUN_ID_MAX_LENGTH = 63 - len("clinrisk-")


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
    task: str = Field(DEFAULT_TASK, pattern=TASK_NAME_PATTERN, description="The task to retrain.")


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
        return RunInput(run_id=self.run_id, trigger=self.request.trigger, task=self.request.task)


class ValidatedRun(ValidateOutput):
    """The validate Lambda's result: what the ValidateData state's ResultSelector picks."""

    run_id: str
    trigger: Trigger
    approval_requested: bool
    task: str = Field(DEFAULT_TASK, pattern=TASK_NAME_PATTERN, description="The task the run trains.")


class TrainOutput(BaseModel):
    model_prefix: str


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


class EvaluateOutput(BaseModel):
    model_version: int
    gate_passed: bool
    gate_reasons: list[str]
    champion_before: int | None
    metrics: dict[str, float | None]


class PromoteInput(BaseModel):
    model_version: int = Field(ge=1)
    expected_champion: int | None = Field(
        description="The champion the version was evaluated against; promotion is refused if it changed."
    )
    task: str = Field(DEFAULT_TASK, pattern=TASK_NAME_PATTERN, description="Whose registered model and pointer.")


class PromoteOutput(BaseModel):
    outcome: Literal["promoted", "stale"]
    champion: int | None
    detail: str
