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
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aws_cdk.assertions import Match, Template
from moto import mock_aws

from cdk_app.bundling import smoke_import
from cdk_app.config import ConfigError, parse_config
from cdk_app.constructs.pipeline_functions import api_url_parameter, collection_endpoint_parameter
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
from clinrisk.monitoring.monitor import DRIFT_ALARM_DIMENSIONS
from clinrisk.pipeline.contracts import ExecutionInput
from clinrisk.registry.serving_pointer import POINTER_KEY
from clinrisk.settings import Settings
from clinrisk.taskspec.catalogue import discover_tasks
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
SAMPLE_ALARM_ARN = "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:clinrisk-dev-heart-disease-feature-drift"


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


def _drift_alarms(template: Template) -> dict[str, tuple[str, dict[str, Any]]]:
    """Task name -> (logical id, properties) of its FeatureDrift alarm, by the alarm's Task dimension."""
    alarms = template.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"MetricName": "FeatureDrift"}})
    by_task = {}
    for logical_id, alarm in alarms.items():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        by_task[dimensions["Task"]] = (logical_id, alarm["Properties"])
    assert len(by_task) == len(alarms), "two drift alarms watch the same task"
    return by_task


def _alarm_rules(template: Template) -> dict[str, dict[str, Any]]:
    """The drift rules, by the logical id of the one alarm each matches."""
    rules = [r for r in _rules(template).values() if "EventPattern" in r]
    by_alarm = {}
    for rule in rules:
        [resource] = rule["EventPattern"]["resources"]
        by_alarm[resource["Fn::GetAtt"][0]] = rule
    assert len(by_alarm) == len(rules)
    return by_alarm


def test_cdk_json_deploys_each_task_with_its_own_schedule() -> None:
    assert CONFIG.task_schedules() == {"readmission": "cron(0 3 ? * MON *)", "heart-disease": "cron(0 5 ? * MON *)"}
    # A cdk.json written before tasks: readmission alone, on retrainSchedule.
    context = {k: v for k, v in cdk_json_context(retrainSchedule="rate(7 days)").items() if k != "tasks"}
    assert parse_config(context).task_schedules() == {"readmission": "rate(7 days)"}


def test_each_tasks_schedule_and_alarm_rule_start_the_machine_for_that_task(pipeline: Template) -> None:
    machine_id, _ = _state_machine(pipeline)
    rules = _rules(pipeline)
    alarms, alarm_rules = _drift_alarms(pipeline), _alarm_rules(pipeline)
    assert set(alarms) == set(CONFIG.task_schedules()) and len(alarm_rules) == len(alarms)
    for task, schedule_expression in CONFIG.task_schedules().items():
        [schedule] = [
            r
            for r in rules.values()
            if "ScheduleExpression" in r and json.loads(r["Targets"][0]["Input"])["task"] == task
        ]
        assert schedule["ScheduleExpression"] == schedule_expression
        alarm_rule = alarm_rules[alarms[task][0]]
        for rule, trigger in ((schedule, "schedule"), (alarm_rule, "drift-alarm")):
            (target,) = rule["Targets"]
            assert target["Arn"] == {"Ref": machine_id}
            execution_input = json.loads(target["Input"])
            assert execution_input == {"trigger": trigger, "task": task}
            ExecutionInput.model_validate(execution_input)  # what ValidateData accepts, extra keys forbidden
            assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][1] == "Arn"
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
            start = _statements(pipeline, target["RoleArn"]["Fn::GetAtt"][0])
            assert [s["Action"] for s in start] == ["states:StartExecution"]
            assert start[0]["Resource"] == {"Ref": machine_id}


def test_heart_diseases_rule_matches_only_heart_diseases_alarm(pipeline: Template) -> None:
    """A task's drift starts only that task's retraining: its rule names its own alarm's ARN, and
    its alarm watches the FeatureDrift series of its own Task dimension."""
    alarms, alarm_rules = _drift_alarms(pipeline), _alarm_rules(pipeline)
    heart_alarm, _ = alarms["heart-disease"]
    rule = alarm_rules[heart_alarm]
    assert rule["EventPattern"]["resources"] == [{"Fn::GetAtt": [heart_alarm, "Arn"]}]
    assert json.loads(rule["Targets"][0]["Input"])["task"] == "heart-disease"
    others = [logical_id for task, (logical_id, _) in alarms.items() if task != "heart-disease"]
    assert others and all(alarm_rules[other] is not rule for other in others)
    assert all(json.loads(alarm_rules[other]["Targets"][0]["Input"])["task"] != "heart-disease" for other in others)


def test_the_alarms_watch_the_series_the_monitor_publishes(pipeline: Template) -> None:
    for task, (_, props) in _drift_alarms(pipeline).items():
        dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        assert tuple(dimensions) == DRIFT_ALARM_DIMENSIONS
        assert dimensions == {"Environment": CONFIG.env, "Task": task}
        assert props["AlarmName"] == f"clinrisk-{CONFIG.env}-{task}-feature-drift"


def test_the_drift_alarm_alarms_to_the_alerts_topic_and_keeps_its_state_without_data(pipeline: Template) -> None:
    for _, props in _drift_alarms(pipeline).values():
        assert props["Namespace"] == "clinrisk"
        assert props["TreatMissingData"] == "ignore"  # "not breaching" would flap OK/ALARM between batches
        assert props["AlarmActions"] == [machine_substitution(pipeline, "AlertsTopicArn")]


def test_the_alarm_rule_fires_on_the_transition_into_alarm_only(pipeline: Template) -> None:
    """EventBridge's matcher (moto's) on the synthesized pattern: one run per ALARM episode, and
    only for the rule's own alarm (another task's alarm starts nothing here)."""
    alarms, alarm_rules = _drift_alarms(pipeline), _alarm_rules(pipeline)
    alarm_id, _ = alarms["heart-disease"]
    pattern = alarm_rules[alarm_id]["EventPattern"]
    assert pattern["resources"] == [{"Fn::GetAtt": [alarm_id, "Arn"]}]  # this alarm, no other
    pattern = {**pattern, "resources": [SAMPLE_ALARM_ARN]}
    cases = {
        ("OK", "ALARM", SAMPLE_ALARM_ARN): 1,
        ("INSUFFICIENT_DATA", "ALARM", SAMPLE_ALARM_ARN): 1,
        ("ALARM", "ALARM", SAMPLE_ALARM_ARN): 0,  # staying in ALARM (e.g. a reason update): no new run
        ("ALARM", "OK", SAMPLE_ALARM_ARN): 0,
        ("OK", "ALARM", SAMPLE_ALARM_ARN.replace("feature-drift", "api-5xx")): 0,
        ("OK", "ALARM", SAMPLE_ALARM_ARN.replace("heart-disease", "readmission")): 0,  # another task's drift
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


def test_promote_writes_the_serving_pointer_and_reads_model_directories_and_the_collection_endpoint(
    pipeline: Template,
) -> None:
    function = _function_ids(pipeline)["lambdas.promote.handler.handler"]
    statements = _statements(pipeline, _role_of(pipeline, function))
    (put,) = _granted(statements, "s3:PutObject")
    assert put["Resource"]["Fn::Join"][1][-1] == f"/{POINTER_KEY}"
    # The champion's similar-patient documents are a file of its model directory.
    (get,) = _granted(statements, "s3:GetObject")
    assert get["Resource"]["Fn::Join"][1][-1] == "/runs/*/model/*"
    assert not _granted(statements, "s3:DeleteObject")
    (parameter,) = _granted(statements, "ssm:GetParameter")
    assert json.dumps(parameter["Resource"]).endswith(f':parameter{collection_endpoint_parameter("dev")}"]]}}')
    variable = "CLINRISK_EXPLAIN__OPENSEARCH_ENDPOINT_PARAMETER"
    assert _environment(pipeline, "lambdas.promote.handler.handler")[variable] == collection_endpoint_parameter("dev")


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
    assert roots == {"train.py", "inference.py", "clinrisk", "tasks", VENDORED_DIR}
    assert "tasks/heart-disease.yaml" in names
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


# Run with -I -S: the extracted source and its lib/ only, as the image's interpreter sees them.
_DISCOVER_TASKS = """
import sys
sys.path[:0] = sys.argv[1:]
from clinrisk.taskspec import catalogue
print(catalogue.__file__)
print(catalogue.TASKS_DIR)
print(" ".join(sorted(catalogue.discover_tasks())))
"""


def test_the_task_files_load_from_the_extracted_source_under_the_images_python(tarball: Path, tmp_path: Path) -> None:
    """The catalogue looks for tasks/ beside the clinrisk package: in the training source that is
    the bundled copy, read with the vendored PyYAML."""
    source = _extracted(tarball, tmp_path)
    result = subprocess.run(
        [str(image_python()), "-I", "-S", "-B", "-c", _DISCOVER_TASKS, str(source), str(source / VENDORED_DIR)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    module, directory, names = result.stdout.splitlines()
    assert Path(module).is_relative_to(source) and Path(directory) == source / "tasks"
    assert names.split() == sorted(discover_tasks())
    assert "heart-disease" in names.split()
