"""The CDK app's settings: `cdk.json` context (and `-c key=value`) parsed into one typed model.

Every key is read here and nowhere else, so a typo or a bad value stops `cdk synth` with one line
that names the key, before any construct is built.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from constructs import Node
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from clinrisk.serving.task_contract import explain_request_model, request_model
from clinrisk.settings import GateRules
from clinrisk.taskspec import catalogue
from clinrisk.taskspec.spec import TaskSpec

# EventBridge schedule expressions: six-field cron or a rate. EventBridge checks the fields itself
# at deploy time; this catches the common mistakes (a five-field Unix cron, a bare string) at synth.
SCHEDULE_PATTERN = r"^(cron\(\S+( \S+){5}\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\))$"
# Deliberately loose: SNS sends a confirmation e-mail, which is the real check.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# Environment names end up in stack names, resource names and tags.
ENV_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,15}$"
# A task's name (clinrisk.taskspec.spec) goes into alarm names and execution inputs; 32 keeps
# `clinrisk-<env>-<task>-feature-drift` well inside CloudWatch's 255 characters.
TASK_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
# The task that has its code package but no task file yet (clinrisk.tasks.readmission), and the
# one a deployment runs when cdk.json lists none, so a cdk.json written before tasks still synthesizes.
DEFAULT_TASK = "readmission"


class ConfigError(ValueError):
    """Raised for a missing or invalid context value; the message is one line naming each key."""


class _ContextModel(BaseModel):
    """cdk.json spells keys in camelCase; Python code uses snake_case."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class GateContext(GateRules):
    """The retraining gate: the domain's own `GateRules`, so the cloud and local gates cannot drift apart."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class BedrockContext(_ContextModel):
    text_model_id: str = Field("amazon.nova-lite-v1:0", min_length=1, description="Converse model for explanations.")
    embedding_model_id: str = Field("amazon.titan-embed-text-v2:0", min_length=1, description="RAG embeddings.")


class TaskContext(_ContextModel):
    """One task the deployment runs: its own retraining schedule (default: `retrainSchedule`)."""

    retrain_schedule: Annotated[str | None, Field(pattern=SCHEDULE_PATTERN)] = None


def checked_tasks(directory: Path | None = None) -> set[str]:
    """The task names a deployment may list: every task file in `tasks/` (default), and readmission.
    Every file there is bundled into the functions, which serve them all, so every file must load
    and every task without plugins must give its request contracts; else `ConfigError`, one line
    naming each file and the key at fault, before any construct is built."""
    directory = directory or catalogue.TASKS_DIR
    survey = catalogue.survey_tasks(directory)
    problems = survey.problems()
    for task in survey.tasks.values():
        if not task.spec.plugins:
            problems += [f"{task.path.name}: {problem}" for problem in _contract_problems(task.spec)]
    if problems:
        raise ConfigError(f"invalid task file in {directory.name}/: {'; '.join(problems)}")
    return {*survey.tasks, DEFAULT_TASK}


def _contract_problems(spec: TaskSpec) -> list[str]:
    try:
        request_model(spec)
        explain_request_model(spec)
    except Exception as error:  # pydantic refuses some column names as fields (`model_dump`, `_id`)
        detail = re.sub(r" at 0x[0-9a-f]+", "", " ".join(str(error).split()))  # one line, the same every run
        return [f"columns: the API's request model cannot be built ({detail})"]
    return []


class ClinriskConfig(_ContextModel):
    """All deploy-time settings. Field descriptions are the README's "Deploying to AWS" table."""

    env: Annotated[str, Field(pattern=ENV_NAME_PATTERN, description="Environment name, part of every stack name.")]
    alarm_email: Annotated[
        str | None, Field(pattern=EMAIL_PATTERN, description="Subscribed to the alerts and approvals topics.")
    ] = None
    retrain_schedule: Annotated[
        str, Field(pattern=SCHEDULE_PATTERN, description="The retraining schedule of a task that names none.")
    ] = "cron(0 3 ? * MON *)"
    tasks: dict[Annotated[str, Field(pattern=TASK_NAME_PATTERN)], TaskContext] = Field(
        default_factory=lambda: {DEFAULT_TASK: TaskContext()},
        min_length=1,
        description="The tasks deployed, by name (a file in tasks/, or readmission), each with its own schedule.",
    )
    gate: GateContext = Field(default_factory=GateContext)
    approval_required: bool = False
    serving_mode: Literal["lambda", "sagemaker"] = "lambda"
    vpc: bool = False
    bedrock: BedrockContext = Field(default_factory=BedrockContext)
    mlflow_flavour: Literal["managed-tracking-server", "serverless-app"] = "managed-tracking-server"
    approval_timeout_hours: Annotated[
        int,
        Field(
            ge=1,
            le=144,
            description="How long a model approval waits for a decision, then the run ends without promoting;"
            " at most 144 (6 days), so a whole run fits the state machine's 7-day execution timeout.",
        ),
    ] = 24
    managed_spot_training: bool = Field(False, description="Train on spot capacity (cheaper; may wait for capacity).")
    api_gateway_account_role: bool = Field(
        True,
        description="Set API Gateway's CloudWatch Logs role, one per account and region, to a role that writes"
        " every API's logs and is kept on destroy; false keeps the account's role (one must be set already).",
    )
    reserved_concurrency: Literal["none", "locks", "all"] = Field(
        "locks",
        description="Lambda reserved concurrency: `locks` reserves only what serialises work (promote: 1), `all`"
        " gives every function its own share (71 in total), `none` reserves nothing. Lambda keeps 100 of the"
        " account's concurrency quota unreserved, so `locks` needs a quota of at least 101 and `all` 171.",
    )
    monitor_schedule: Annotated[str, Field(pattern=SCHEDULE_PATTERN, description="When the monitor runs.")] = (
        "rate(1 hour)"
    )
    capture_retention_days: int = Field(
        365, ge=1, le=3650, description="Days captured predictions and keyed outcomes are kept in the capture bucket."
    )

    @field_validator("alarm_email", mode="before")
    @classmethod
    def _empty_email_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("tasks")
    @classmethod
    def _tasks_are_known(cls, tasks: dict[str, TaskContext], info: ValidationInfo) -> dict[str, TaskContext]:
        known: set[str] = (info.context or {}).get("known_tasks") or checked_tasks()
        unknown = sorted(set(tasks) - known)
        if unknown:
            raise ValueError(
                f"unknown task(s) {', '.join(unknown)}: not a task file in tasks/ nor {DEFAULT_TASK}"
                f" (known: {', '.join(sorted(known))})"
            )
        return tasks

    def task_schedules(self) -> dict[str, str]:
        """Each deployed task's retraining schedule, by task name, in cdk.json's order."""
        return {name: task.retrain_schedule or self.retrain_schedule for name, task in self.tasks.items()}

    @field_validator("gate", "bedrock", "tasks", mode="before")
    @classmethod
    def _json_from_command_line(cls, value: object) -> object:
        # `-c gate='{"aucFloor": 0.7}'` arrives as a string; cdk.json gives an object.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"not a JSON object ({error.msg})") from error
        return value


CONTEXT_KEYS: tuple[str, ...] = tuple(field.alias or name for name, field in ClinriskConfig.model_fields.items())


def parse_config(context: dict[str, Any], tasks_dir: Path | None = None) -> ClinriskConfig:
    """Validate the task files of `tasks_dir` (`tasks/`), then the known keys of `context`; other keys
    (CDK feature flags, CLI settings) are not ours."""
    known = checked_tasks(tasks_dir)
    ours = {key: value for key, value in context.items() if key in CONTEXT_KEYS}
    try:
        return ClinriskConfig.model_validate(ours, context={"known_tasks": known})
    except ValidationError as error:
        raise ConfigError(f"invalid cdk.json context: {_one_line(error)}") from None


def config_from_node(node: Node) -> ClinriskConfig:
    """The app's context, which the CDK CLI fills from cdk.json, cdk.context.json and `-c`."""
    values = {key: node.try_get_context(key) for key in CONTEXT_KEYS}
    return parse_config({key: value for key, value in values.items() if value is not None})


def _one_line(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        got = "" if item["type"] == "missing" else f" (got {item['input']!r})"
        problems.append(f"{key}: {item['msg']}{got}")
    return "; ".join(problems)
