"""The pipeline stack's security-critical and wiring properties, by property and Match (logical ids
are only ever read from the template, never written down):

- the state machine: its definition is the ASL file, every `${Name}` has a value, logging ALL,
  X-Ray, the stage functions it names are the right handlers;
- the triggers: the schedule and the drift-alarm rules target the state machine, and the alarm
  rule fires on the transition into ALARM only (checked by EventBridge's own matcher, in moto);
- IAM: no wildcard actions; the training and state-machine roles name what they reach;
- every function has a dead-letter queue and an on-failure destination; KMS everywhere;
- the training source tarball: what the SageMaker image needs, and nothing it must not get.
"""

from __future__ import annotations

import importlib
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aws_cdk.assertions import Match, Template
from moto import mock_aws

from cdk_app.bundling import smoke_import
from cdk_app.config import ConfigError, parse_config
from cdk_app.constructs.pipeline_functions import api_url_parameter
from cdk_app.constructs.retraining_state_machine import DefinitionOutOfSyncError, definition_substitutions
from cdk_app.constructs.training_source import (
    IMAGE_PYTHON,
    VENDORED_DIR,
    build_tarball,
    tarball_bytes,
    vendored_packages,
)
from cdk_app.stacks.pipeline import check_run_fits
from cdk_app.state_machine import definition_text, substitution_variables
from clinrisk.pipeline.contracts import ExecutionInput
from clinrisk.registry.serving_pointer import POINTER_KEY
from clinrisk.settings import Settings
from tests.image.environment import image_python
from tests.infrastructure.conftest import Synthesized, cdk_json_context

pytestmark = pytest.mark.infrastructure

PIPELINE = "clinrisk-dev-pipeline"
CONFIG = parse_config(cdk_json_context())
HANDLERS = {
    "ValidateFunctionArn": "lambdas.validate.handler.handler",
    "EvaluateFunctionArn": "lambdas.evaluate.handler.handler",
    "PromoteFunctionArn": "lambdas.promote.handler.handler",
    "ApprovalRequestFunctionArn": "lambdas.approval_request.handler.handler",
}
DECISION_HANDLER = "lambdas.approval_decision.handler.handler"
SAMPLE_ALARM_ARN = "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:clinrisk-dev-feature-drift"


@pytest.fixture(scope="module")
def pipeline(synthesized: Synthesized) -> Template:
    return synthesized.template(PIPELINE)


def _one(template: Template, kind: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    ((logical_id, resource),) = found.items()
    return logical_id, dict(resource)


def _state_machine(template: Template) -> tuple[str, dict[str, Any]]:
    return _one(template, "AWS::StepFunctions::StateMachine")


def _function_ids(template: Template) -> dict[str, str]:
    """Handler → logical id of its function."""
    return {f["Properties"]["Handler"]: lid for lid, f in template.find_resources("AWS::Lambda::Function").items()}


def _role_of(template: Template, logical_id: str, attribute: str = "Role") -> str:
    resource = template.to_json()["Resources"][logical_id]
    role_id: str = resource["Properties"][attribute]["Fn::GetAtt"][0]
    return role_id


def _statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}})
    assert policies, role_id
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _granted(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in statements if s["Effect"] == "Allow" and action in _as_list(s["Action"])]


# --------------------------------------------------------------------------- the state machine


def test_the_definition_is_the_asl_file_and_every_variable_has_a_value(pipeline: Template) -> None:
    _, machine = _state_machine(pipeline)
    props = machine["Properties"]
    assert json.loads(props["DefinitionString"]) == json.loads(definition_text())
    assert set(props["DefinitionSubstitutions"]) == substitution_variables(definition_text())
    assert props["StateMachineType"] == "STANDARD"
    assert "TimeoutSeconds" in json.loads(props["DefinitionString"])  # the execution timeout is the ASL's


def test_a_variable_without_a_value_stops_synthesis_naming_it() -> None:
    text = '{"A": "${Known}", "B": "${AddedToTheAsl}"}'
    with pytest.raises(DefinitionOutOfSyncError, match="AddedToTheAsl"):
        definition_substitutions(text, {"Known": "x"})
    assert definition_substitutions(text, {"Known": "x", "AddedToTheAsl": "y", "Unused": "z"}) == {
        "Known": "x",
        "AddedToTheAsl": "y",
    }


def test_substitution_values_name_the_right_functions_and_settings(pipeline: Template) -> None:
    _, machine = _state_machine(pipeline)
    values = machine["Properties"]["DefinitionSubstitutions"]
    functions = _function_ids(pipeline)
    for variable, handler in HANDLERS.items():
        assert values[variable] == {"Fn::GetAtt": [functions[handler], "Arn"]}, variable
    assert values["ApprovalRequired"] == json.dumps(CONFIG.approval_required)
    assert values["ManagedSpotTraining"] == json.dumps(CONFIG.managed_spot_training)
    assert values["ApprovalTimeoutSeconds"] == str(CONFIG.approval_timeout_hours * 3600)
    for number in ("TrainingMaxRuntimeSeconds", "TrainingMaxWaitSeconds", "TrainingPollSeconds"):
        assert int(values[number]) > 0
    assert int(values["TrainingMaxWaitSeconds"]) >= int(values["TrainingMaxRuntimeSeconds"])
    assert values["TrainingInstanceType"].startswith("ml.")
    assert values["TrainingRoleArn"]["Fn::GetAtt"][1] == "Arn"
    assert values["TrainingImageUri"]["Fn::FindInMap"][0] == "XgboostImageTraining"
    # The source tarball is the `code` channel; its file name is the last segment of its URI.
    file_name = values["TrainingSourceFileName"]
    assert values["TrainingSourceUri"]["Fn::Join"][1][-1] == f"/{file_name}"


def test_logging_all_events_encrypted_and_tracing(pipeline: Template) -> None:
    _, machine = _state_machine(pipeline)
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False  # input is untrusted; the approval token is a credential
    (destination,) = logging["Destinations"]
    group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    group = pipeline.to_json()["Resources"][group_id]["Properties"]
    assert group["LogGroupName"]["Fn::Join"][1][0].startswith("/aws/vendedlogs/states/")  # + deployment suffix
    assert group["KmsKeyId"] and group["RetentionInDays"] == 365


def test_the_state_machine_role_names_its_tasks(pipeline: Template) -> None:
    machine_id, _ = _state_machine(pipeline)
    statements = _statements(pipeline, _role_of(pipeline, machine_id, "RoleArn"))
    functions = _function_ids(pipeline)
    (invoke,) = _granted(statements, "lambda:InvokeFunction")
    assert sorted(map(json.dumps, _as_list(invoke["Resource"]))) == sorted(
        json.dumps({"Fn::GetAtt": [functions[h], "Arn"]}) for h in HANDLERS.values()
    )
    (create,) = _granted(statements, "sagemaker:CreateTrainingJob")
    assert set(_as_list(create["Action"])) == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:AddTags",
    }
    assert json.dumps(create["Resource"]).endswith(':training-job/clinrisk-*"]]}')
    (pass_role,) = _granted(statements, "iam:PassRole")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert pass_role["Resource"] == machine_substitution(pipeline, "TrainingRoleArn")
    (publish,) = _granted(statements, "sns:Publish")
    assert publish["Resource"] == machine_substitution(pipeline, "AlertsTopicArn")


def machine_substitution(template: Template, name: str) -> Any:
    return _state_machine(template)[1]["Properties"]["DefinitionSubstitutions"][name]


def test_no_policy_of_the_pipeline_grants_a_wildcard_action(pipeline: Template) -> None:
    for logical_id, policy in pipeline.find_resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert not [a for a in _as_list(statement["Action"]) if "*" in a], (logical_id, statement)


def test_the_training_role_reads_channels_and_code_writes_output_and_pulls_the_image(pipeline: Template) -> None:
    role_id = pipeline.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]
                }
            }
        },
    )
    (training_role,) = role_id
    statements = _statements(pipeline, training_role)
    reads = json.dumps([s["Resource"] for s in _granted(statements, "s3:GetObject")])
    writes = json.dumps([s["Resource"] for s in _granted(statements, "s3:PutObject")])
    assert "/runs/*/channels/*" in reads and "cdk-hnb659fds-assets" in reads
    assert "/runs/*/training/*" in writes and "/runs/*/channels/" not in writes
    (grant,) = _granted(statements, "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    (pull,) = _granted(statements, "ecr:BatchGetImage")
    assert ":repository/" in json.dumps(pull["Resource"])  # the image's own repository, not "*"
    (token,) = _granted(statements, "ecr:GetAuthorizationToken")
    assert token["Resource"] == "*"  # the API has no resource-level permissions (acknowledged)
    logs = json.dumps([s["Resource"] for s in _granted(statements, "logs:PutLogEvents")])
    assert "/aws/sagemaker/TrainingJobs" in logs


# --------------------------------------------------------------------------- triggers


def _rules(template: Template) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in template.find_resources("AWS::Events::Rule").items()}


def test_the_schedule_and_the_alarm_rule_both_target_the_state_machine(pipeline: Template) -> None:
    machine_id, _ = _state_machine(pipeline)
    rules = _rules(pipeline)
    schedule = [r for r in rules.values() if r.get("ScheduleExpression") == CONFIG.retrain_schedule]
    alarm = [r for r in rules.values() if "EventPattern" in r]
    assert len(schedule) == 1 and len(alarm) == 1
    for rule, trigger in ((schedule[0], "schedule"), (alarm[0], "drift-alarm")):
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": machine_id}
        execution_input = json.loads(target["Input"])
        assert execution_input == {"trigger": trigger}
        ExecutionInput.model_validate(execution_input)  # what ValidateData accepts, extra keys forbidden
        assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][1] == "Arn"
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
        start = _statements(pipeline, target["RoleArn"]["Fn::GetAtt"][0])
        assert [s["Action"] for s in start] == ["states:StartExecution"]
        assert start[0]["Resource"] == {"Ref": machine_id}


def test_the_drift_alarm_alarms_to_the_alerts_topic_and_keeps_its_state_without_data(pipeline: Template) -> None:
    _, alarm = _one(pipeline, "AWS::CloudWatch::Alarm", {"MetricName": "FeatureDrift"})
    props = alarm["Properties"]
    assert props["Namespace"] == "clinrisk"
    assert props["TreatMissingData"] == "ignore"  # "not breaching" would flap OK/ALARM between batches
    assert props["AlarmActions"] == [machine_substitution(pipeline, "AlertsTopicArn")]


def test_the_alarm_rule_fires_on_the_transition_into_alarm_only(pipeline: Template) -> None:
    """EventBridge's matcher (moto's) on the synthesized pattern: one run per ALARM episode."""
    alarm_id, _ = _one(pipeline, "AWS::CloudWatch::Alarm", {"MetricName": "FeatureDrift"})
    (rule,) = [r for r in _rules(pipeline).values() if "EventPattern" in r]
    pattern = rule["EventPattern"]
    assert pattern["resources"] == [{"Fn::GetAtt": [alarm_id, "Arn"]}]  # this alarm, no other
    pattern = {**pattern, "resources": [SAMPLE_ALARM_ARN]}
    cases = {
        ("OK", "ALARM", SAMPLE_ALARM_ARN): 1,
        ("INSUFFICIENT_DATA", "ALARM", SAMPLE_ALARM_ARN): 1,
        ("ALARM", "ALARM", SAMPLE_ALARM_ARN): 0,  # staying in ALARM (e.g. a reason update): no new run
        ("ALARM", "OK", SAMPLE_ALARM_ARN): 0,
        ("OK", "ALARM", SAMPLE_ALARM_ARN.replace("feature-drift", "api-5xx")): 0,
    }
    with mock_aws():
        events, sqs = boto3.client("events", "eu-west-1"), boto3.client("sqs", "eu-west-1")
        queue = sqs.create_queue(QueueName="starts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="drift", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="drift", Targets=[{"Id": "starts", "Arn": queue_arn}])
        for (previous, state, resource), expected in cases.items():
            detail = {"alarmName": "x", "state": {"value": state}, "previousState": {"value": previous}}
            events.put_events(
                Entries=[
                    {
                        "Source": "aws.cloudwatch",
                        "DetailType": "CloudWatch Alarm State Change",
                        "Resources": [resource],
                        "Detail": json.dumps(detail),
                    }
                ]
            )
            received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            for message in received:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            assert len(received) == expected, (previous, state, resource)


def test_overlapping_runs_are_serialised_at_promotion(pipeline: Template) -> None:
    """EventBridge starts do not skip a running execution; the promote function's reserved
    concurrency of 1 makes the registry's compare-and-set a lock across runs (see triggers)."""
    functions = _function_ids(pipeline)
    promote = pipeline.to_json()["Resources"][functions["lambdas.promote.handler.handler"]]["Properties"]
    assert promote["ReservedConcurrentExecutions"] == 1


# --------------------------------------------------------------------------- functions


def test_every_function_has_a_dead_letter_queue_and_an_on_failure_destination(pipeline: Template) -> None:
    functions = pipeline.find_resources("AWS::Lambda::Function")
    assert len(functions) == 5
    configs = pipeline.find_resources("AWS::Lambda::EventInvokeConfig")
    on_failure = {c["Properties"]["FunctionName"]["Ref"]: c for c in configs.values()}
    for logical_id, function in functions.items():
        props = function["Properties"]
        queue = props["DeadLetterConfig"]["TargetArn"]
        assert on_failure[logical_id]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == queue
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["KmsKeyArn"]  # reservations: the reservedConcurrency setting (test_first_deploy.py)


def test_every_handler_the_stack_names_exists() -> None:
    for handler in (*HANDLERS.values(), DECISION_HANDLER):
        module, name = handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), handler


def test_kms_everywhere(pipeline: Template) -> None:
    pipeline.all_resources_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value()})
    pipeline.all_resources_properties("AWS::SecretsManager::Secret", {"KmsKeyId": Match.any_value()})
    for queue in pipeline.find_resources("AWS::SQS::Queue").values():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") or props.get("KmsMasterKeyId"), props
    _, machine = _state_machine(pipeline)
    values = machine["Properties"]["DefinitionSubstitutions"]
    assert "Fn::ImportValue" in values["KmsKeyId"]  # training volume and output: the data key


def _environment(template: Template, handler: str) -> dict[str, Any]:
    function = template.to_json()["Resources"][_function_ids(template)[handler]]
    environment: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return environment


def test_stage_functions_run_the_aws_backend_with_the_deployment_gate(
    pipeline: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    for handler in ("lambdas.validate.handler.handler", "lambdas.evaluate.handler.handler"):
        environment = _environment(pipeline, handler)
        assert environment["CLINRISK_BACKEND"] == "aws"
        assert environment["CLINRISK_HOME"].startswith("/tmp/")
        assert "Mlflow" in json.dumps(environment["MLFLOW_TRACKING_URI"])  # the MLflow stack's ARN
    literal = {
        k: v for k, v in _environment(pipeline, "lambdas.evaluate.handler.handler").items() if isinstance(v, str)
    }
    for key, value in literal.items():
        monkeypatch.setenv(key, value)
    assert Settings().gate.model_dump() == CONFIG.gate.model_dump()  # what the evaluate Lambda reads


def test_promote_writes_the_serving_pointer_and_nothing_else(pipeline: Template) -> None:
    role = _role_of(pipeline, _function_ids(pipeline)["lambdas.promote.handler.handler"])
    statements = _statements(pipeline, role)
    (put,) = _granted(statements, "s3:PutObject")
    assert put["Resource"]["Fn::Join"][1][-1] == f"/{POINTER_KEY}"
    assert not _granted(statements, "s3:GetObject") and not _granted(statements, "s3:DeleteObject")


def test_the_approval_functions_reach_their_secret_topic_parameter_and_machine(pipeline: Template) -> None:
    functions = _function_ids(pipeline)
    secret_id, _ = _one(pipeline, "AWS::SecretsManager::Secret")
    values = _state_machine(pipeline)[1]["Properties"]["DefinitionSubstitutions"]
    request = _statements(pipeline, _role_of(pipeline, functions[HANDLERS["ApprovalRequestFunctionArn"]]))
    decision = _statements(pipeline, _role_of(pipeline, functions[DECISION_HANDLER]))
    for statements in (request, decision):
        (read,) = _granted(statements, "secretsmanager:GetSecretValue")
        assert read["Resource"] == {"Ref": secret_id}
        # The secret's key is the data key: only through Secrets Manager (the request's other
        # Decrypt is the messaging key's, for publishing to the encrypted topic).
        (decrypt,) = [s for s in _granted(statements, "kms:Decrypt") if s["Resource"] == values["KmsKeyId"]]
        assert decrypt["Condition"]["StringEquals"] == {
            "kms:ViaService": {"Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    (parameter,) = _granted(request, "ssm:GetParameter")
    assert json.dumps(parameter["Resource"]).endswith(f':parameter{api_url_parameter("dev")}"]]}}')
    assert _granted(request, "sns:Publish")
    machine_id, _ = _state_machine(pipeline)
    (answer,) = _granted(decision, "states:SendTaskSuccess")
    assert set(answer["Action"]) == {"states:SendTaskSuccess", "states:SendTaskFailure"}
    assert answer["Resource"] == {"Ref": machine_id}
    assert not _granted(decision, "sns:Publish")


# --------------------------------------------------------------------------- settings


def test_every_allowed_approval_timeout_fits_the_execution_timeout() -> None:
    check_run_fits(parse_config(cdk_json_context(approvalTimeoutHours=144, managedSpotTraining=True)))
    with pytest.raises(ConfigError, match=r"^invalid cdk.json context: approvalTimeoutHours:"):
        parse_config(cdk_json_context(approvalTimeoutHours=145))


# --------------------------------------------------------------------------- training source


@pytest.fixture(scope="module")
def tarball() -> Path:
    return build_tarball(vendored_packages())


def test_the_tarball_holds_the_script_the_package_and_the_vendored_dependencies(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
        modes = {m.name: m.mode for m in archive.getmembers()}
    assert "train.py" in names and "clinrisk/model/training.py" in names and "clinrisk/settings.py" in names
    # The endpoint of the `sagemaker` serving mode runs from the same tarball.
    assert "inference.py" in names and "clinrisk/serving/endpoint_contract.py" in names
    assert "clinrisk/tasks/readmission/task.yaml" in names  # the training job resolves readmission from it
    vendored = {n.removeprefix(f"{VENDORED_DIR}/") for n in names if n.startswith(f"{VENDORED_DIR}/")}
    assert {"pydantic/__init__.py", "pydantic_settings/__init__.py", "typing_extensions.py"} <= vendored
    cores = [n for n in vendored if n.startswith("pydantic_core/_pydantic_core.")]
    assert cores == [f"pydantic_core/_pydantic_core.cpython-{IMAGE_PYTHON.replace('.', '')}-x86_64-linux-gnu.so"]
    assert modes[f"{VENDORED_DIR}/{cores[0]}"] & 0o111
    # The toolkit's `pip install .` builds one wheel of the tree, and pip refuses a wheel with more
    # than its own .dist-info at the root (tests/image runs it): the vendored ones are under lib/.
    roots = {n.split("/")[0] for n in names}
    assert roots == {"train.py", "inference.py", "clinrisk", VENDORED_DIR}
    assert any(n.startswith("pydantic-") and n.split("/")[0].endswith(".dist-info") for n in vendored)
    # The image provides these (built against each other); a vendored copy would shadow them.
    assert not [n for n in vendored if n.split("/")[0] in {"numpy", "pandas", "xgboost", "sklearn", "pyarrow"}]
    # The toolkit would pip install a root requirements.txt, which fails under network isolation.
    assert "requirements.txt" not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]


def test_the_tarball_is_reproducible(tarball: Path) -> None:
    assert tarball_bytes(vendored_packages()) == tarball.read_bytes()
    assert tarball.name.startswith("training-source-") and tarball.name.endswith(".tar.gz")


def _extracted(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return into


def test_the_vendored_packages_import_under_the_images_python(tarball: Path, tmp_path: Path) -> None:
    """CPython 3.10 must be here (tests/image/environment.py says how to get it): no skip."""
    vendored = _extracted(tarball, tmp_path) / VENDORED_DIR
    result = smoke_import(vendored, image_python(), ["pydantic", "pydantic_core", "pydantic_settings"])
    assert result.python.startswith(IMAGE_PYTHON) and result.stray == []


def test_clinrisk_imports_under_the_images_python(tarball: Path, tmp_path: Path) -> None:
    source = _extracted(tarball, tmp_path)
    result = smoke_import(
        source,
        image_python(),
        [
            "clinrisk.errors",
            "clinrisk.tasks.readmission.schema",
            "clinrisk.serving.endpoint_archive",
            "clinrisk.taskspec.catalogue",  # the task files: PyYAML, vendored
        ],
        runtime_paths=[source / VENDORED_DIR],
    )
    assert result.stray == []
