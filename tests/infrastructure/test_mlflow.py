"""The MLflow stack and the IAM scoped to it: the managed tracking server (cdk.json's flavour) from
the session's synthesis, the serverless MLflow app from a small synthesis of its own."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template

from cdk_app.config import parse_config
from cdk_app.constructs.mlflow_server import APP_ACTIONS, REGISTRY_ACTIONS, TRACKING_ACTIONS
from cdk_app.stacks.foundation import FoundationStack
from cdk_app.stacks.mlflow import MlflowStack
from cdk_app.stacks.props import ClinriskProps
from tests.infrastructure.conftest import Synthesized, cdk_json_context

pytestmark = pytest.mark.infrastructure

MLFLOW = "clinrisk-dev-mlflow"
PIPELINE = "clinrisk-dev-pipeline"
# The data-plane calls clinrisk's MLflow clients make (clinrisk.registry.tracking and .model_registry): each
# must be granted, by name, or the call is refused with 403 on the tracking server.
CALLS_MADE = {
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:LogBatch",
    "sagemaker-mlflow:SetTag",
    "sagemaker-mlflow:CreateRegisteredModel",
    "sagemaker-mlflow:GetRegisteredModel",
    "sagemaker-mlflow:SearchRegisteredModels",
    "sagemaker-mlflow:CreateModelVersion",
    "sagemaker-mlflow:GetModelVersion",
    "sagemaker-mlflow:SetModelVersionTag",
    "sagemaker-mlflow:SetRegisteredModelAlias",
    "sagemaker-mlflow:DeleteRegisteredModelAlias",
    "sagemaker-mlflow:GetModelVersionByAlias",
    "sagemaker-mlflow:SetRegisteredModelTag",
    "sagemaker-mlflow:SearchModelVersions",
    "sagemaker-mlflow:GetRun",
}
# What no clinrisk client needs, and what would destroy lineage: never granted.
DESTRUCTIVE = {
    "sagemaker-mlflow:DeleteExperiment",
    "sagemaker-mlflow:DeleteRun",
    "sagemaker-mlflow:DeleteTag",
    "sagemaker-mlflow:DeleteRegisteredModel",
    "sagemaker-mlflow:DeleteModelVersion",
    "sagemaker-mlflow:DeleteLoggedModel",
    "sagemaker-mlflow:RenameRegisteredModel",
    "sagemaker-mlflow:RestoreExperiment",
    "sagemaker-mlflow:RestoreRun",
    "sagemaker-mlflow:TransitionModelVersionStage",
}


@pytest.fixture(scope="module")
def mlflow(synthesized: Synthesized) -> Template:
    return synthesized.template(MLFLOW)


@pytest.fixture(scope="module")
def pipeline(synthesized: Synthesized) -> Template:
    return synthesized.template(PIPELINE)


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _statements_of_role(template: Template, role_id: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}})
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _function_role(template: Template, handler: str) -> str:
    functions = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": handler}})
    (function,) = functions.values()
    role_id: str = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_id


def _mlflow_statement(template: Template, role_id: str) -> dict[str, Any]:
    """The one statement of the role whose resource is the MLflow stack's ARN (a cross-stack import)."""
    found = [
        s
        for s in _statements_of_role(template, role_id)
        if "Fn::ImportValue" in str(s["Resource"]) and "Mlflow" in str(s["Resource"])
    ]
    assert len(found) == 1, found
    return found[0]


def test_tracking_server_stores_artifacts_under_mlflow_prefix_without_auto_registration(mlflow: Template) -> None:
    mlflow.resource_count_is("AWS::SageMaker::MlflowTrackingServer", 1)
    mlflow.has_resource_properties(
        "AWS::SageMaker::MlflowTrackingServer",
        {
            "TrackingServerName": "clinrisk-dev",
            "ArtifactStoreUri": {"Fn::Join": ["", ["s3://", {"Fn::ImportValue": Match.any_value()}, "/mlflow/"]]},
            "AutomaticModelRegistration": False,
            "WeeklyMaintenanceWindowStart": Match.string_like_regexp(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun):\d\d:\d\d$"),
            "RoleArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        },
    )


def test_the_server_role_reaches_only_the_artifact_prefix(mlflow: Template) -> None:
    (server,) = mlflow.find_resources("AWS::SageMaker::MlflowTrackingServer").values()
    role_id = server["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    (role,) = [r for lid, r in mlflow.find_resources("AWS::IAM::Role").items() if lid == role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    statements = _statements_of_role(mlflow, role_id)
    object_resources = [str(s["Resource"]) for s in statements if {"s3:GetObject", "s3:PutObject"} & set(_actions(s))]
    assert object_resources and all("/mlflow/*" in resource for resource in object_resources)
    assert {a for s in statements for a in _actions(s)} == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    # The server waits for its policy: SageMaker checks the artifact store when it creates it.
    policy_ids = mlflow.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}})
    assert set(policy_ids) <= set(server["DependsOn"])


def test_evaluate_may_track_and_register_by_named_actions_only(pipeline: Template) -> None:
    statement = _mlflow_statement(pipeline, _function_role(pipeline, "lambdas.evaluate.handler.handler"))
    actions = set(_actions(statement))
    assert actions == {*TRACKING_ACTIONS, *REGISTRY_ACTIONS}
    assert actions >= CALLS_MADE
    assert all(a.startswith("sagemaker-mlflow:") for a in actions)  # no UI login link for a function
    assert not [a for a in actions if "*" in a]
    assert not actions & DESTRUCTIVE


def test_promote_may_use_the_registry_only(pipeline: Template) -> None:
    statement = _mlflow_statement(pipeline, _function_role(pipeline, "lambdas.promote.handler.handler"))
    actions = set(_actions(statement))
    assert actions == set(REGISTRY_ACTIONS)
    assert not actions & DESTRUCTIVE
    assert "sagemaker-mlflow:CreateRun" not in actions
    assert "sagemaker-mlflow:SetRegisteredModelAlias" in actions


def test_evaluate_logs_artifacts_under_the_mlflow_prefix(pipeline: Template) -> None:
    statements = _statements_of_role(pipeline, _function_role(pipeline, "lambdas.evaluate.handler.handler"))
    writes = [str(s["Resource"]) for s in statements if "s3:PutObject" in _actions(s)]
    assert any("/mlflow/*" in resource for resource in writes), writes


def _serverless_templates() -> tuple[Template, Template]:
    """(Mlflow, a client stack): the serverless flavour, and a role granted access to it."""
    app = App(context=cdk_json_context(mlflowFlavour="serverless-app"))
    config = parse_config(cdk_json_context(mlflowFlavour="serverless-app"))
    foundation = FoundationStack(app, "Foundation", config=config)
    mlflow = MlflowStack(app, "Mlflow", props=ClinriskProps(config=config, foundation=foundation))
    client = Stack(app, "Client")
    role = iam.Role(client, "Client", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    mlflow.grant_mlflow_access(role)
    app.synth()
    return Template.from_stack(mlflow), Template.from_stack(client)


def test_serverless_app_flavour_uses_the_app_and_call_mlflow_app_api() -> None:
    mlflow, client = _serverless_templates()
    mlflow.resource_count_is("AWS::SageMaker::MlflowTrackingServer", 0)
    mlflow.has_resource_properties(
        "AWS::SageMaker::MlflowApp",
        {
            "Name": "clinrisk-dev",
            "ArtifactStoreUri": {"Fn::Join": ["", ["s3://", {"Fn::ImportValue": Match.any_value()}, "/mlflow/"]]},
            "ModelRegistrationMode": "AutoModelRegistrationDisabled",
        },
    )
    # The app authorises its whole REST API with CallMlflowAppApi; sagemaker-mlflow:* alone gets 403.
    client.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sagemaker:CallMlflowAppApi",
                                "Effect": "Allow",
                                "Resource": {"Fn::ImportValue": Match.string_like_regexp("Mlflow")},
                            }
                        )
                    ]
                )
            }
        },
    )
    assert APP_ACTIONS == ("sagemaker:CallMlflowAppApi",)
