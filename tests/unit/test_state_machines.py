"""The retraining state machine (`state_machines/retraining.asl.json`), checked offline:

- the graph: every target exists, every state is reachable, the only cycle is the training
  poll, the stages run in the local pipeline's order, and a failure or a "no" never reaches Promote;
- `asl-validator` (npm) on the definition after substitution;
- every service-integration Task's Parameters (aws-sdk ones too) against the botocore model of
  the API it calls, and each Lambda state's Payload against the pydantic model of its handler;
- Retry on transient errors only (never our domain errors), Catch States.ALL everywhere;
- the substitution variables equal the table in state_machines/README.md.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cdk_app.state_machine import (
    DEFINITION_FILE,
    POLLING_LOOP,
    STATE_STAGES,
    MissingSubstitutionError,
    definition_text,
    load_definition,
    substitute,
    substitution_variables,
)
from clinrisk.errors import ClinriskError
from clinrisk.pipeline import contracts
from clinrisk.pipeline.local import STAGES
from clinrisk.registry.approval import ApprovalRequest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "state_machines" / "README.md"
ASL_VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"

# Values of the shape the CDK app will pass as DefinitionSubstitutions.
_ACCOUNT = "111122223333"
_REGION = "eu-west-1"
SAMPLE_SUBSTITUTIONS: dict[str, str] = {
    "AlertsTopicArn": f"arn:aws:sns:{_REGION}:{_ACCOUNT}:clinrisk-alerts",
    "ApprovalRequestFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-approval-request",
    "ApprovalRequired": "true",
    "ApprovalTimeoutSeconds": "86400",
    "ArtifactsBucket": f"clinrisk-artifacts-{_ACCOUNT}",
    "EvaluateFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-evaluate",
    "KmsKeyId": f"arn:aws:kms:{_REGION}:{_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "ManagedSpotTraining": "false",
    "PromoteFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-promote",
    "TrainingDataUri": f"s3://clinrisk-data-{_ACCOUNT}/cohorts/current.csv",
    "TrainingImageUri": f"141502667606.dkr.ecr.{_REGION}.amazonaws.com/sagemaker-xgboost:1.7-1",
    "TrainingInstanceType": "ml.m5.xlarge",
    "TrainingMaxRuntimeSeconds": "3600",
    "TrainingMaxWaitSeconds": "7200",
    "TrainingPollSeconds": "60",
    "TrainingRoleArn": f"arn:aws:iam::{_ACCOUNT}:role/clinrisk-training",
    "TrainingSourceFileName": "0123abcd.tar.gz",
    "TrainingSourceUri": f"s3://cdk-hnb659fds-assets-{_ACCOUNT}-{_REGION}/0123abcd.tar.gz",
    "ValidateFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-validate",
}

# Errors worth retrying: the service or the integration stumbled, our code never ran or
# never decided anything. Each Task's retriers must cover its service's list.
TRANSIENT_ERRORS: dict[str, frozenset[str]] = {
    "lambda": frozenset(
        {
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        }
    ),
    # aws-sdk integration: SageMaker's transient common errors, as Step Functions names them.
    "sagemaker": frozenset(
        {"SageMaker.ThrottlingException", "SageMaker.ServiceUnavailableException", "SageMaker.InternalFailureException"}
    ),
    "sns": frozenset({"SNS.ThrottledException", "SNS.InternalErrorException", "ThrottlingException"}),
}
# SageMaker errors that would fail the same way again: a retry only delays the notification. The generic
# SageMakerException may stand for a validation error too, so it is not retried either.
SAGEMAKER_PERMANENT_ERRORS = (
    "SageMaker.ValidationException",
    "SageMaker.AccessDeniedException",
    "SageMaker.ResourceLimitExceededException",
    "SageMaker.SageMakerException",
)
# Wildcards a retrier must never use: they would retry our own decisions too.
RETRY_WILDCARDS = frozenset({"States.ALL", "States.TaskFailed", "States.Timeout"})
# Error names the approval endpoints send with SendTaskFailure (not a Python class).
APPROVAL_ERRORS = frozenset({"ApprovalRejected"})
# Modules that define ClinriskError subclasses raised by the stage Lambdas; imported so that
# __subclasses__ sees them.
DOMAIN_ERROR_MODULES = (
    "clinrisk.adapters.aws",
    "clinrisk.registry.approval",
    "clinrisk.model.archive",
    "clinrisk.pipeline.stages",
    "clinrisk.model.risk_model",
    "clinrisk.pipeline.local",
    "clinrisk.ports",
    "clinrisk.registry.model_registry",
    "clinrisk.model.training",
    "clinrisk.data.validation",
    "lambdas.common",
)

_RESOURCE = re.compile(
    r"^arn:aws:states:::(?:aws-sdk:)?(?P<service>[a-z0-9-]+):(?P<action>[A-Za-z0-9]+)"
    r"(?:\.(?P<pattern>sync|waitForTaskToken))?$"
)
# The handler model of each Lambda state's Payload, and the model its ResultSelector reads.
LAMBDA_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    "ValidateData": (contracts.ValidateInput, contracts.ValidatedRun),
    "Evaluate": (contracts.EvaluateInput, contracts.EvaluateOutput),
    "RequestApproval": (ApprovalRequest, None),  # its result is what SendTaskSuccess sends
    "Promote": (contracts.PromoteInput, contracts.PromoteOutput),
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(SAMPLE_SUBSTITUTIONS)


def _states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = definition["States"]
    return states


def _targets(state: dict[str, Any]) -> list[str]:
    """Every state this one can move to: Next, Default, each Choice rule, each Catch."""
    targets = [state[key] for key in ("Next", "Default") if key in state]
    targets += [rule["Next"] for rule in state.get("Choices", [])]
    targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return targets


def _reachable(definition: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(_targets(_states(definition)[name]))
    return seen


def _paths(definition: dict[str, Any]) -> Iterator[list[str]]:
    """Every path from StartAt to a state with no way out, going round the polling loop at most
    once (a path never enters a state twice)."""

    def walk(path: list[str]) -> Iterator[list[str]]:
        targets = _targets(_states(definition)[path[-1]])
        if not targets:
            yield path
        for target in dict.fromkeys(targets):
            if target not in path:
                yield from walk([*path, target])

    yield from walk([definition["StartAt"]])


def _collapse(stages: list[str]) -> tuple[str, ...]:
    """['validate', 'validate', 'train'] → ('validate', 'train')."""
    return tuple(stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage)


def stage_order_problems(definition: dict[str, Any], table: dict[str, str]) -> list[str]:
    """Why the machine's stages disagree with STAGES; empty when they agree."""
    order = {stage: index for index, stage in enumerate(STAGES)}
    problems = [
        f"{name} → {target} goes back from {table[name]} to {table[target]}"
        for name, state in _states(definition).items()
        for target in _targets(state)
        if order[table[target]] < order[table[name]]
    ]
    walked = {_collapse([table[name] for name in path]) for path in _paths(definition)}
    if tuple(STAGES) not in walked:
        problems.append(f"no path runs the stages {STAGES}; paths run {sorted(walked)}")
    return problems


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in _states(definition).items() if state["Type"] == "Task"}


def _service(state: dict[str, Any]) -> str:
    match = _RESOURCE.match(state["Resource"])
    assert match, f"not a service-integration resource: {state['Resource']}"
    return match["service"]


def _domain_error_names() -> set[str]:
    """Class names of every ClinriskError subclass: the Step Functions error names of our
    own decisions (lambdas/common.py), which a retry would only repeat."""
    for module in DOMAIN_ERROR_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    pending: list[type[BaseException]] = [ClinriskError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names | APPROVAL_ERRORS


# --------------------------------------------------------------------------- botocore


def _operation(state: dict[str, Any]) -> Any:
    """The botocore OperationModel a Task's Resource calls (sagemaker:createTrainingJob → CreateTrainingJob)."""
    import botocore.session  # type: ignore[import-untyped]

    match = _RESOURCE.match(state["Resource"])
    assert match, f"not a service-integration resource: {state['Resource']}"
    model = botocore.session.get_session().get_service_model(match["service"])
    action = match["action"]
    name = action[0].upper() + action[1:]
    assert name in model.operation_names, f"{match['service']} has no operation {name} ({state['Resource']})"
    return model.operation_model(name)


def _sample(shape: Any) -> Any:
    """A value of `shape` that botocore accepts: what a JSONPath field stands for at run time."""
    if shape is None:
        return "sample"
    kind = shape.type_name
    low = shape.metadata.get("min", 0)
    if kind == "structure":
        return {name: _sample(shape.members[name]) for name in shape.required_members}
    if kind == "list":
        return [_sample(shape.member) for _ in range(max(1, int(low)))]
    if kind == "string":
        return shape.enum[0] if shape.enum else "s" * max(6, int(low))
    samples: dict[str, Any] = {
        "map": {},
        "integer": max(1, int(low)),
        "long": max(1, int(low)),
        "boolean": True,
        "double": float(max(1, low)),
        "float": float(max(1, low)),
        "blob": b"sample",
        "timestamp": datetime(2025, 1, 1, tzinfo=UTC),
    }
    return samples[kind]


def _member(shape: Any, name: str) -> Any:
    """The shape of member `name`; None for an unknown one (the validator reports it)."""
    if shape is None:
        return None
    if shape.type_name == "structure":
        return shape.members.get(name)
    if shape.type_name == "map":
        return shape.value
    return None


def resolve(value: Any, shape: Any) -> Any:
    """Parameters as Step Functions sends them: `Name.$` fields become sample values of their
    shape (under their name without `.$`), and JSON under a blob member (Lambda's Payload) is
    serialized, as the integration does."""
    if isinstance(value, dict):
        resolved: dict[str, Any] = {}
        for key, item in value.items():
            name = key.removesuffix(".$")
            member = _member(shape, name)
            resolved[name] = _sample(member) if key.endswith(".$") else resolve(item, member)
        value = resolved
    elif isinstance(value, list):
        value = [
            resolve(item, shape.member if shape is not None and shape.type_name == "list" else None) for item in value
        ]
    if shape is not None and shape.type_name == "blob" and isinstance(value, dict | list):
        return json.dumps(value)
    return value


def validation_errors(state: dict[str, Any], parameters: dict[str, Any] | None = None) -> str:
    """botocore's report on the request a Task sends; empty when the request is valid."""
    from botocore.validate import ParamValidator  # type: ignore[import-untyped]

    operation = _operation(state)
    request = resolve(state["Parameters"] if parameters is None else parameters, operation.input_shape)
    report = ParamValidator().validate(request, operation.input_shape)
    return str(report.generate_report()) if report.has_errors() else ""


# --------------------------------------------------------------------------- the graph


def test_raw_definition_is_json_with_placeholders_only_inside_strings() -> None:
    # The CDK reads the file as text; our tests parse it: both need it to be JSON as written.
    raw = json.loads(definition_text())
    assert raw["StartAt"] in raw["States"]


def test_every_transition_target_exists(definition: dict[str, Any]) -> None:
    states = _states(definition)
    assert definition["StartAt"] in states
    dangling = {(name, target) for name, state in states.items() for target in _targets(state) if target not in states}
    assert not dangling, f"transitions to missing states: {sorted(dangling)}"


def test_every_state_is_reachable(definition: dict[str, Any]) -> None:
    unreachable = set(_states(definition)) - _reachable(definition, definition["StartAt"])
    assert not unreachable, f"unreachable states: {sorted(unreachable)}"


def _on_a_cycle(definition: dict[str, Any]) -> set[str]:
    return {
        name
        for name, state in _states(definition).items()
        if any(name in _reachable(definition, target) for target in _targets(state))
    }


def test_the_only_cycle_is_the_training_poll(definition: dict[str, Any]) -> None:
    # Retries live in Retry, not in loops. The one loop polls the training job: it waits on every
    # turn, and SageMaker's stopping condition ends the job (hence the loop) in bounded time.
    assert _on_a_cycle(definition) == POLLING_LOOP
    states = _states(definition)
    assert {states[name]["Type"] for name in POLLING_LOOP} == {"Wait", "Task", "Choice"}
    exits = {target for name in POLLING_LOOP for target in _targets(states[name])} - POLLING_LOOP
    assert exits == {"Evaluate", "TrainingFailed", "NotifyFailed"}


def test_cycle_check_catches_a_loop_outside_the_poll(definition: dict[str, Any]) -> None:
    looped = copy.deepcopy(definition)
    looped["States"]["Gate"]["Default"] = "Evaluate"
    assert _on_a_cycle(looped) - POLLING_LOOP == {"Evaluate", "Gate"}


def test_stage_table_names_every_state(definition: dict[str, Any]) -> None:
    assert set(STATE_STAGES) == set(_states(definition))
    assert set(STATE_STAGES.values()) == set(STAGES)


def test_stages_run_in_the_local_pipelines_order(definition: dict[str, Any]) -> None:
    assert stage_order_problems(definition, STATE_STAGES) == []


def test_stage_order_check_catches_a_swap(definition: dict[str, Any]) -> None:
    swapped = {**STATE_STAGES, "Train": "evaluate", "Evaluate": "train"}
    assert stage_order_problems(definition, swapped)


@pytest.mark.parametrize("start", ["NotifyFailed", "NotifyRejected", "NotifyNotApproved"])
def test_no_failure_or_rejection_reaches_promote(definition: dict[str, Any], start: str) -> None:
    assert "Promote" not in _reachable(definition, start)


def test_every_catch_leads_to_a_notification(definition: dict[str, Any]) -> None:
    for name, state in _tasks(definition).items():
        for catcher in state["Catch"]:
            assert STATE_STAGES[catcher["Next"]] == "notify", f"{name} catches into {catcher['Next']}"


def test_failures_end_in_a_fail_state(definition: dict[str, Any]) -> None:
    # So the run counts as failed (ExecutionsFailed alarm) after the failure is notified.
    ends = {path[-1] for path in _paths(definition) if "NotifyFailed" in path}
    assert {_states(definition)[end]["Type"] for end in ends} == {"Fail"}


def test_approval_timeout_and_rejection_skip_promotion(definition: dict[str, Any]) -> None:
    approval = _states(definition)["RequestApproval"]
    assert approval["Resource"].endswith(".waitForTaskToken")
    assert approval["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert "TimeoutSeconds" in approval or "TimeoutSecondsPath" in approval
    by_error = {error: c["Next"] for c in approval["Catch"] for error in c["ErrorEquals"]}
    assert by_error["States.Timeout"] == by_error["ApprovalRejected"] == "NotifyNotApproved"


# --------------------------------------------------------------------------- language and data flow


def test_machine_uses_jsonpath_and_has_a_timeout(definition: dict[str, Any]) -> None:
    assert definition["QueryLanguage"] == "JSONPath"
    assert isinstance(definition["TimeoutSeconds"], int)
    for name, state in _states(definition).items():
        jsonata = {"Arguments", "Output", "Assign", "QueryLanguage"} & set(state)
        assert not jsonata, f"{name} uses {sorted(jsonata)}"


def test_every_task_says_where_its_result_goes(definition: dict[str, Any]) -> None:
    # Without ResultPath a Task replaces the whole run document with its result.
    for name, state in _tasks(definition).items():
        assert "ResultPath" in state, f"{name} has no ResultPath"
        if state["Resource"].endswith("lambda:invoke"):
            assert "ResultSelector" in state, f"{name} passes the Lambda's whole response envelope on"


def test_no_task_uses_the_sync_integration(definition: dict[str, Any]) -> None:
    # Training is polled with aws-sdk describeTrainingJob instead, which moto's interpreter runs
    # (tests/integration/test_retraining_interpreter.py); it cannot run `.sync` SageMaker tasks.
    synced = [name for name, state in _tasks(definition).items() if ".sync" in state["Resource"]]
    assert synced == []


def test_the_poll_describes_the_job_train_created(definition: dict[str, Any]) -> None:
    states = _states(definition)
    name = states["Train"]["Parameters"]["TrainingJobName.$"]
    assert states["CheckTraining"]["Parameters"] == {"TrainingJobName.$": name}
    assert states["WaitForTraining"]["SecondsPath"] == "$.config.training_poll_seconds"
    assert "training_poll_seconds.$" in states["PrepareRun"]["Parameters"]["config"]


def _choose(state: dict[str, Any], document: dict[str, Any]) -> str:
    """The target a Choice state picks, for the StringEquals/Or rules the poll uses."""

    def holds(rule: dict[str, Any]) -> bool:
        if "Or" in rule:
            return any(holds(inner) for inner in rule["Or"])
        value: Any = document
        for part in rule["Variable"].removeprefix("$.").split("."):
            value = value[part]
        return bool(value == rule["StringEquals"])

    return next((rule["Next"] for rule in state["Choices"] if holds(rule)), state["Default"])


def test_every_training_job_status_has_its_way_out(definition: dict[str, Any]) -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    statuses = model.operation_model("DescribeTrainingJob").output_shape.members["TrainingJobStatus"].enum
    choice = _states(definition)["TrainingStatus"]
    chosen = {status: _choose(choice, {"trained": {"status": status}}) for status in statuses}
    assert chosen == {
        "Completed": "Evaluate",
        "Failed": "TrainingFailed",
        "Stopped": "TrainingFailed",
        "Deleting": "TrainingFailed",
        "InProgress": "WaitForTraining",
        "Stopping": "WaitForTraining",
    }


def test_a_failed_training_job_becomes_the_runs_error(definition: dict[str, Any]) -> None:
    failed = _states(definition)["TrainingFailed"]
    assert failed["Type"] == "Pass" and failed["ResultPath"] == "$.error" and failed["Next"] == "NotifyFailed"
    # The shape a Catch writes, which NotifyFailed and the Fail state's cause read.
    assert {key.removesuffix(".$") for key in failed["Parameters"]} == {"Error", "Cause"}
    assert failed["Parameters"]["Error"] == "TrainingJobFailed"


def test_training_job_is_locked_down(definition: dict[str, Any]) -> None:
    train = _states(definition)["Train"]["Parameters"]
    assert train["EnableNetworkIsolation"] is True
    assert train["OutputDataConfig"]["KmsKeyId"] and train["ResourceConfig"]["VolumeKmsKeyId"]
    assert train["HyperParameters"]["sagemaker_program"] == "train.py"
    channels = {channel["ChannelName"]: channel["DataSource"]["S3DataSource"] for channel in train["InputDataConfig"]}
    # Network isolation: the source must come in as the 'code' channel, not be fetched from S3, and
    # the run's task file as the 'task' channel that ValidateData wrote (the container reads it as
    # the local pipeline's does; moto drops a job's Environment, so the task is not passed that way).
    assert set(channels) == {"train", "validation", "task", "code"}
    assert "$.validated.channels.task" in channels["task"]["S3Uri.$"]
    assert "Environment" not in train
    assert train["HyperParameters"]["sagemaker_submit_directory"].startswith("/opt/ml/input/data/code/")


# --------------------------------------------------------------------------- asl-validator


def _asl_validator(path: Path) -> subprocess.CompletedProcess[str]:
    if not ASL_VALIDATOR.exists():
        pytest.fail(f"{ASL_VALIDATOR} is missing: run `make install` (npm ci) to install the node tools")
    return subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_asl_validator_accepts_the_substituted_definition(definition: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "retraining.asl.json"
    path.write_text(json.dumps(definition))
    result = _asl_validator(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_rejects_a_broken_definition(definition: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(definition)
    broken["States"]["Evaluate"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken))
    assert _asl_validator(path).returncode != 0


# --------------------------------------------------------------------------- botocore service models


def test_every_service_task_sends_a_valid_request(definition: dict[str, Any]) -> None:
    reports = {name: validation_errors(state) for name, state in _tasks(definition).items()}
    assert {name: report for name, report in reports.items() if report} == {}


def _required_path(shape: Any, path: str) -> bool:
    """Whether the JSONPath `$.A.B` names members the response always has (required at every step)."""
    for part in path.removeprefix("$.").split("."):
        if shape is None or shape.type_name != "structure" or part not in shape.required_members:
            return False
        shape = shape.members[part]
    return True


def test_sdk_results_select_only_members_always_returned(definition: dict[str, Any]) -> None:
    # A ResultSelector path that does not match fails the state with States.Runtime, which no
    # Catch sees: the run would end without a notification.
    for name, state in _tasks(definition).items():
        if ":aws-sdk:" not in state["Resource"]:
            continue
        output = _operation(state).output_shape
        paths = [path for key, path in state["ResultSelector"].items() if key.endswith(".$")]
        optional = [path for path in paths if not _required_path(output, path)]
        assert paths and optional == [], f"{name} selects optional members {optional}"


@pytest.mark.parametrize("state_name", sorted(LAMBDA_MODELS))
def test_lambda_payloads_match_their_handlers_models(definition: dict[str, Any], state_name: str) -> None:
    state = _states(definition)[state_name]
    event_model, result_model = LAMBDA_MODELS[state_name]
    sent = {key.removesuffix(".$") for key in state["Parameters"]["Payload"]}
    fields = event_model.model_fields
    assert sent <= set(fields), f"{state_name} sends fields {event_model.__name__} refuses: {sent - set(fields)}"
    required = {name for name, field in fields.items() if field.is_required()}
    assert required <= sent, f"{state_name} leaves out required {sorted(required - sent)}"
    if result_model is not None:
        selected = {path.removeprefix("$.Payload.") for path in state["ResultSelector"].values()}
        assert selected <= set(result_model.model_fields), f"{state_name} selects what its handler never returns"


@pytest.mark.parametrize(
    ("old", "typo"),
    [("TrainingJobName.$", "TrainingJobNam.$"), ("EnableNetworkIsolation", "EnableNetworkIsolaton")],
)
def test_a_misspelt_parameter_fails_validation(definition: dict[str, Any], old: str, typo: str) -> None:
    train = copy.deepcopy(_states(definition)["Train"])
    train["Parameters"][typo] = train["Parameters"].pop(old)
    assert typo.removesuffix(".$") in validation_errors(train)


def test_a_misspelt_nested_parameter_fails_validation(definition: dict[str, Any]) -> None:
    notify = copy.deepcopy(_states(definition)["Notify"])
    notify["Parameters"]["TopicArnn"] = notify["Parameters"].pop("TopicArn")
    assert "TopicArnn" in validation_errors(notify)


@pytest.mark.parametrize(("capacity", "spot"), [("OnDemandCapacity", False), ("SpotCapacity", True)])
def test_training_request_is_valid_for_each_capacity(definition: dict[str, Any], capacity: str, spot: bool) -> None:
    # Train takes its stopping condition from the capacity branch; validate what it will send.
    branch = _states(definition)[capacity]["Parameters"]
    train = _states(definition)["Train"]
    parameters = {
        k: v for k, v in train["Parameters"].items() if not k.startswith(("StoppingCondition", "EnableManaged"))
    }
    parameters |= {
        "StoppingCondition": branch["stopping_condition"],
        "EnableManagedSpotTraining": branch["managed_spot"],
    }
    assert validation_errors(train, parameters) == ""
    assert branch["managed_spot"] is spot
    # SageMaker refuses MaxWaitTimeInSeconds without spot and requires it with spot.
    assert ("MaxWaitTimeInSeconds.$" in branch["stopping_condition"]) is spot


# --------------------------------------------------------------------------- retries and catches


def test_every_task_retries_its_transient_errors_with_backoff(definition: dict[str, Any]) -> None:
    for name, state in _tasks(definition).items():
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        missing = TRANSIENT_ERRORS[_service(state)] - retried
        assert not missing, f"{name} does not retry {sorted(missing)}"
        for retrier in state["Retry"]:
            assert retrier["BackoffRate"] > 1 and retrier["MaxAttempts"] >= 2, f"{name}: no exponential backoff"


def step_functions_error_name(service: str, code: str) -> str:
    """The error an aws-sdk task raises for a service error code (Step Functions developer guide, "AWS SDK
    service integrations"): `<Service>.<code>`, with `Exception` appended when the code lacks it."""
    return f"{service}.{code}" if code.endswith("Exception") else f"{service}.{code}Exception"


def _retrier_for(state: dict[str, Any], error: str) -> dict[str, Any] | None:
    """The retrier Step Functions applies to `error`: the first whose ErrorEquals names it (or States.ALL)."""
    for retrier in state.get("Retry", []):
        if error in retrier["ErrorEquals"] or "States.ALL" in retrier["ErrorEquals"]:
            return retrier
    return None


def test_sagemaker_transient_names_follow_the_naming_rule() -> None:
    # SageMaker's API reference lists ThrottlingException, ServiceUnavailable and InternalFailure as common errors.
    codes = ("ThrottlingException", "ServiceUnavailable", "InternalFailure")
    assert {step_functions_error_name("SageMaker", code) for code in codes} == TRANSIENT_ERRORS["sagemaker"]


@pytest.mark.parametrize("state_name", ["Train", "CheckTraining"])
@pytest.mark.parametrize("error", SAGEMAKER_PERMANENT_ERRORS)
def test_sagemaker_errors_that_would_repeat_fail_at_once(
    definition: dict[str, Any], state_name: str, error: str
) -> None:
    state = _states(definition)[state_name]
    assert _retrier_for(state, error) is None
    assert _states(definition)[state["Catch"][-1]["Next"]]["Type"] == "Task"  # straight to NotifyFailed


@pytest.mark.parametrize("error", sorted(TRANSIENT_ERRORS["sagemaker"]))
def test_sagemaker_transient_errors_are_retried_with_backoff(definition: dict[str, Any], error: str) -> None:
    for state_name in ("Train", "CheckTraining"):
        retrier = _retrier_for(_states(definition)[state_name], error)
        assert retrier is not None and retrier["MaxAttempts"] >= 2 and retrier["BackoffRate"] > 1


def test_a_job_not_yet_visible_is_described_again_but_not_created_again(definition: dict[str, Any]) -> None:
    """DescribeTrainingJob right after CreateTrainingJob may not find the job yet (eventual consistency).
    SageMaker models that error as ResourceNotFound for DescribeTrainingJob (botocore's service model)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    describe_errors = {shape.name for shape in model.operation_model("DescribeTrainingJob").error_shapes}
    assert "ResourceNotFound" in describe_errors
    not_found = step_functions_error_name("SageMaker", "ResourceNotFound")
    retrier = _retrier_for(_states(definition)["CheckTraining"], not_found)
    assert retrier is not None and retrier["MaxAttempts"] >= 2
    assert _retrier_for(_states(definition)["Train"], not_found) is None


def test_no_task_retries_a_domain_error_or_a_wildcard(definition: dict[str, Any]) -> None:
    forbidden = _domain_error_names() | RETRY_WILDCARDS
    for name, state in _tasks(definition).items():
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        assert not retried & forbidden, f"{name} retries {sorted(retried & forbidden)}"


def test_every_task_catches_everything_last(definition: dict[str, Any]) -> None:
    for name, state in _tasks(definition).items():
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], f"{name} does not catch States.ALL last"
        assert all("ResultPath" in catcher for catcher in state["Catch"]), f"{name} drops the run document on error"
        if STATE_STAGES[name] != "notify":
            assert state["Catch"][-1]["Next"] == "NotifyFailed"


# --------------------------------------------------------------------------- substitutions


def _documented_variables() -> set[str]:
    """First-column names of the table under '## Substitution variables' in the README."""
    section = README.read_text(encoding="utf-8").split("## Substitution variables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`([A-Za-z][A-Za-z0-9]*)`\s*\|", section, flags=re.MULTILINE))


def test_substitution_variables_match_the_readme_table() -> None:
    assert substitution_variables(definition_text()) == _documented_variables()


def test_samples_cover_every_substitution_variable() -> None:
    assert substitution_variables(definition_text()) == set(SAMPLE_SUBSTITUTIONS)


def test_substitution_refuses_a_missing_value() -> None:
    values = {k: v for k, v in SAMPLE_SUBSTITUTIONS.items() if k != "KmsKeyId"}
    with pytest.raises(MissingSubstitutionError, match="KmsKeyId"):
        substitute(DEFINITION_FILE.read_text(encoding="utf-8"), values)


def test_domain_errors_include_those_the_stage_lambdas_raise() -> None:
    expected = {
        "BadEventError",
        "DataNotFoundError",
        "DataValidationError",
        "ModelArchiveError",
        "StaleChampionError",
        "TrainingFailedError",
        "NotificationError",
    }
    assert expected <= _domain_error_names()
