"""Security-critical properties of the serving stack, by property and Match, never by logical id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk.assertions import Match, Template

from cdk_app.config import ConfigError
from cdk_app.constructs.api_auth import MACHINE_CLIENT_SCOPES
from cdk_app.constructs.predict_service import ALIAS_NAME
from cdk_app.constructs.rest_api import (
    APPROVAL_DECISION_PATH,
    APPROVAL_LINK_PARAMETERS,
    EXPLAIN_PATH,
    PREDICT_THROTTLE,
    STAGE_NAME,
    STAGE_THROTTLE,
)
from cdk_app.constructs.sagemaker_endpoint import ServerlessEndpoint
from cdk_app.constructs.wildcard_resources import (
    acknowledge_wildcard_resources,
    flatten_reference,
    wildcard_resources,
)
from clinrisk.registry.serving_pointer import POINTER_KEY
from clinrisk.serving.auth import RESOURCE_SERVER, SCOPES
from clinrisk.serving.prediction import MAX_ENCOUNTERS
from clinrisk.settings import SageMakerServing
from tests.infrastructure.conftest import Synthesized

pytestmark = pytest.mark.infrastructure

SERVING = "clinrisk-dev-serving"
FOUNDATION = "clinrisk-dev-foundation"
API_NAME = "clinrisk-dev"
PREDICT_SCOPE = f"{RESOURCE_SERVER}/predict"
PUBLIC_ROUTES = {("GET", "/health"), ("GET", APPROVAL_DECISION_PATH), ("POST", APPROVAL_DECISION_PATH)}
# Every task's routes (lambdas/predict/task_routes.py) under one resource with a {task} path parameter.
TASK_ROUTES = {("GET", "/v1/tasks"), ("GET", "/v1/tasks/{task}/model"), ("POST", "/v1/tasks/{task}/predict")}
PROTECTED_ROUTES = {("GET", "/v1/model"), ("GET", "/v1/docs"), ("POST", "/v1/predict"), *TASK_ROUTES}
# scope explain: tests/infrastructure/test_explain.py
EXPLAIN_ROUTES = {("POST", EXPLAIN_PATH), ("POST", "/v1/tasks/{task}/explain")}
ONE_YEAR = 365

Route = tuple[str, str]


@pytest.fixture(scope="module")
def serving(synthesized: Synthesized) -> Template:
    return synthesized.template(SERVING)


@pytest.fixture(scope="module")
def resources(serving: Template) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = serving.to_json()["Resources"]
    return found


@pytest.fixture(scope="module")
def routes(resources: dict[str, dict[str, Any]]) -> dict[Route, dict[str, Any]]:
    return api_routes(resources)


@pytest.fixture(scope="module")
def alerts_topic_import(synthesized: Synthesized) -> dict[str, str]:
    """How the serving stack refers to the alerts topic: the import of the foundation's export of it."""
    foundation = synthesized.template(FOUNDATION).to_json()
    topics = [
        logical_id
        for logical_id, resource in foundation["Resources"].items()
        if resource["Type"] == "AWS::SNS::Topic" and "alerts" in resource["Properties"].get("DisplayName", "")
    ]
    assert len(topics) == 1
    exports = [
        output["Export"]["Name"]
        for output in foundation.get("Outputs", {}).values()
        if output.get("Value") == {"Ref": topics[0]} and "Export" in output
    ]
    assert len(exports) == 1
    return {"Fn::ImportValue": exports[0]}


# --------------------------------------------------------------------------- helpers


def api_routes(resources: dict[str, dict[str, Any]]) -> dict[Route, dict[str, Any]]:
    """Every API Gateway method as (HTTP method, full path) → its properties."""
    paths = {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::ApiGateway::Resource"
    }

    def full_path(parent: Any) -> str:
        if isinstance(parent, dict) and "Ref" in parent:
            properties = paths[parent["Ref"]]
            return f"{full_path(properties['ParentId'])}/{properties['PathPart']}"
        return ""  # the root resource: Fn::GetAtt [RestApi, RootResourceId]

    found: dict[Route, dict[str, Any]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGateway::Method":
            properties = resource["Properties"]
            path = full_path(properties["ResourceId"]) or "/"
            found[(properties["HttpMethod"], path)] = properties
    return found


def of_type(resources: dict[str, dict[str, Any]], type_name: str) -> dict[str, dict[str, Any]]:
    return {logical_id: r for logical_id, r in resources.items() if r["Type"] == type_name}


def the_one(resources: dict[str, dict[str, Any]], type_name: str) -> tuple[str, dict[str, Any]]:
    found = of_type(resources, type_name)
    assert len(found) == 1, (type_name, list(found))
    logical_id, resource = next(iter(found.items()))
    return logical_id, resource


def serving_findings(report: dict[str, Any]) -> list[str]:
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith("Serving/")
    ]


# --------------------------------------------------------------------------- routes and authorization


def test_the_api_has_exactly_the_expected_routes(routes: dict[Route, dict[str, Any]]) -> None:
    assert set(routes) == PUBLIC_ROUTES | PROTECTED_ROUTES | EXPLAIN_ROUTES


def test_every_method_but_the_public_ones_needs_a_token_with_the_predict_scope(
    routes: dict[Route, dict[str, Any]], resources: dict[str, dict[str, Any]]
) -> None:
    authorizer_id, authorizer = the_one(resources, "AWS::ApiGateway::Authorizer")
    user_pool_id, _ = the_one(resources, "AWS::Cognito::UserPool")
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["ProviderARNs"] == [{"Fn::GetAtt": [user_pool_id, "Arn"]}]
    protected = {route: p for route, p in routes.items() if route not in PUBLIC_ROUTES | EXPLAIN_ROUTES}
    assert set(protected) == PROTECTED_ROUTES
    for route, properties in protected.items():
        assert properties["AuthorizationType"] == "COGNITO_USER_POOLS", route
        assert properties["AuthorizerId"] == {"Ref": authorizer_id}, route
        assert properties["AuthorizationScopes"] == [PREDICT_SCOPE], route


def test_the_methods_without_authorizer_are_exactly_health_and_the_signed_approval_links(
    routes: dict[Route, dict[str, Any]],
) -> None:
    public = {route for route, properties in routes.items() if properties.get("AuthorizationType", "NONE") == "NONE"}
    assert public == PUBLIC_ROUTES
    assert not any(method == "OPTIONS" for method, _ in routes)


def test_approval_links_must_carry_every_signed_parameter(routes: dict[Route, dict[str, Any]]) -> None:
    required = {f"method.request.querystring.{name}": True for name in APPROVAL_LINK_PARAMETERS}
    for method in ("GET", "POST"):
        properties = routes[(method, APPROVAL_DECISION_PATH)]
        assert properties["RequestParameters"] == required
        assert "RequestValidatorId" in properties


def test_predict_bodies_are_validated_against_a_coarse_schema(
    routes: dict[Route, dict[str, Any]], resources: dict[str, dict[str, Any]]
) -> None:
    models = {r["Properties"]["Name"]: i for i, r in of_type(resources, "AWS::ApiGateway::Model").items()}
    model_id = models["PredictRequest"]
    model = resources[model_id]
    validator_id, validator = the_one(resources, "AWS::ApiGateway::RequestValidator")
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True
    predict = routes[("POST", "/v1/predict")]
    assert predict["RequestModels"] == {"application/json": {"Ref": model_id}}
    assert predict["RequestValidatorId"] == {"Ref": validator_id}
    schema = model["Properties"]["Schema"]
    assert schema["type"] == "object" and schema["required"] == ["encounters"]
    encounters = schema["properties"]["encounters"]
    assert (encounters["minItems"], encounters["maxItems"]) == (1, MAX_ENCOUNTERS)
    assert encounters["items"] == {"type": "object"}


def test_a_tasks_routes_need_its_name_and_a_body_of_encounters_or_records(
    routes: dict[Route, dict[str, Any]], resources: dict[str, dict[str, Any]]
) -> None:
    for method, path in routes:
        if path.startswith("/v1/tasks/{task}/"):
            assert routes[(method, path)]["RequestParameters"] == {"method.request.path.task": True}, path
    models = {r["Properties"]["Name"]: i for i, r in of_type(resources, "AWS::ApiGateway::Model").items()}
    predict = routes[("POST", "/v1/tasks/{task}/predict")]
    assert predict["RequestModels"] == {"application/json": {"Ref": models["TaskPredictRequest"]}}
    schema = resources[models["TaskPredictRequest"]]["Properties"]["Schema"]
    # Readmission's body holds `encounters`, a task file's `records` (clinrisk.serving.task_contract).
    assert [option["required"] for option in schema["anyOf"]] == [["encounters"], ["records"]]
    for option in schema["anyOf"]:
        [rows] = option["properties"].values()
        assert (rows["minItems"], rows["maxItems"], rows["items"]) == (1, MAX_ENCOUNTERS, {"type": "object"})
    explain = routes[("POST", "/v1/tasks/{task}/explain")]
    assert explain["RequestModels"] == {"application/json": {"Ref": models["TaskExplainRequest"]}}
    schema = resources[models["TaskExplainRequest"]]["Properties"]["Schema"]
    assert [option["required"] for option in schema["anyOf"]] == [["encounter"], ["record"]]


def test_predict_routes_invoke_the_live_alias(
    routes: dict[Route, dict[str, Any]], resources: dict[str, dict[str, Any]]
) -> None:
    alias_id, alias = the_one(resources, "AWS::Lambda::Alias")
    assert alias["Properties"]["Name"] == ALIAS_NAME
    for route in PROTECTED_ROUTES | {("GET", "/health")}:
        integration = routes[route]["Integration"]
        assert integration["Type"] == "AWS_PROXY", route
        assert {"Ref": alias_id} in integration["Uri"]["Fn::Join"][1], route
    permissions = of_type(resources, "AWS::Lambda::Permission")
    alias_permissions = [p for p in permissions.values() if p["Properties"]["FunctionName"] == {"Ref": alias_id}]
    assert len(alias_permissions) == len(PROTECTED_ROUTES) + 1
    for permission in permissions.values():
        assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
        assert "SourceArn" in permission["Properties"]


# --------------------------------------------------------------------------- stage: logs, traces, limits


def test_stage_logs_traces_and_throttles(serving: Template, resources: dict[str, dict[str, Any]]) -> None:
    _, stage = the_one(resources, "AWS::ApiGateway::Stage")
    properties = stage["Properties"]
    assert properties["StageName"] == STAGE_NAME
    assert properties["TracingEnabled"] is True
    everything = Match.object_like(
        {
            "HttpMethod": "*",
            "ResourcePath": "/*",
            "LoggingLevel": "INFO",
            "DataTraceEnabled": False,
            "MetricsEnabled": True,
            "ThrottlingRateLimit": STAGE_THROTTLE.rate,
            "ThrottlingBurstLimit": STAGE_THROTTLE.burst,
        }
    )
    predict = Match.object_like(
        {
            "HttpMethod": "POST",
            "ResourcePath": "/~1v1~1predict",
            "ThrottlingRateLimit": PREDICT_THROTTLE.rate,
            "ThrottlingBurstLimit": PREDICT_THROTTLE.burst,
        }
    )
    serving.has_resource_properties(
        "AWS::ApiGateway::Stage", {"MethodSettings": Match.array_with([everything, predict])}
    )
    # Data tracing would log request and response bodies, which hold patient values.
    assert all(setting.get("DataTraceEnabled") is False for setting in properties["MethodSettings"])


def test_access_logs_are_json_to_an_encrypted_log_group_without_bodies_or_query_strings(
    resources: dict[str, dict[str, Any]],
) -> None:
    _, stage = the_one(resources, "AWS::ApiGateway::Stage")
    setting = stage["Properties"]["AccessLogSetting"]
    log_group_id = setting["DestinationArn"]["Fn::GetAtt"][0]
    log_group = resources[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert "KmsKeyId" in log_group["Properties"]
    fields = json.loads(setting["Format"])
    assert {"requestId", "status", "resourcePath", "clientId"} <= set(fields)
    variables = " ".join(fields.values())
    for leak in ("$input", "requestBody", "querystring", "header."):
        assert leak not in variables


def test_execution_logs_go_to_a_log_group_made_before_the_stage(resources: dict[str, dict[str, Any]]) -> None:
    _, stage = the_one(resources, "AWS::ApiGateway::Stage")
    api_id, _ = the_one(resources, "AWS::ApiGateway::RestApi")
    account_id, account = the_one(resources, "AWS::ApiGateway::Account")
    execution = [
        logical_id
        for logical_id, r in of_type(resources, "AWS::Logs::LogGroup").items()
        if r["Properties"].get("LogGroupName")
        == {"Fn::Join": ["", ["API-Gateway-Execution-Logs_", {"Ref": api_id}, f"/{STAGE_NAME}"]]}
    ]
    assert len(execution) == 1
    # API Gateway would otherwise create it itself, unencrypted and kept forever, and log with no role.
    assert {execution[0], account_id} <= set(stage["DependsOn"])
    role = resources[account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role["Properties"]


def test_every_log_group_is_encrypted_and_kept_a_year(resources: dict[str, dict[str, Any]]) -> None:
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    assert len(log_groups) >= 4  # access, execution, WAF, predict function
    for logical_id, log_group in log_groups.items():
        assert log_group["Properties"]["RetentionInDays"] == ONE_YEAR, logical_id
        assert "Fn::ImportValue" in log_group["Properties"]["KmsKeyId"], logical_id
        assert log_group["DeletionPolicy"] == "Retain", logical_id


# --------------------------------------------------------------------------- WAF


def test_the_web_acl_is_associated_with_the_stage(resources: dict[str, dict[str, Any]]) -> None:
    acl_id, acl = the_one(resources, "AWS::WAFv2::WebACL")
    stage_id, _ = the_one(resources, "AWS::ApiGateway::Stage")
    api_id, _ = the_one(resources, "AWS::ApiGateway::RestApi")
    _, association = the_one(resources, "AWS::WAFv2::WebACLAssociation")
    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    arn_parts = association["Properties"]["ResourceArn"]["Fn::Join"][1]
    assert {"Ref": api_id} in arn_parts
    assert {"Ref": stage_id} in arn_parts


def test_the_web_acl_has_managed_rule_groups_and_a_rate_limit(resources: dict[str, dict[str, Any]]) -> None:
    _, acl = the_one(resources, "AWS::WAFv2::WebACL")
    rules = {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}
    managed = {
        rule["Statement"]["ManagedRuleGroupStatement"]["Name"]
        for rule in rules.values()
        if "ManagedRuleGroupStatement" in rule["Statement"]
    }
    assert managed == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    }
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    # A request of 1,000 encounters (~1.5 MB) is over the rule's 8 KB: it may only count.
    assert common["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    rate = [rule for rule in rules.values() if "RateBasedStatement" in rule["Statement"]]
    assert len(rate) == 1
    assert rate[0]["Action"] == {"Block": {}}
    assert rate[0]["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert len({rule["Priority"] for rule in rules.values()}) == len(rules)


def test_waf_logs_go_to_an_encrypted_waf_log_group_without_the_token(resources: dict[str, dict[str, Any]]) -> None:
    acl_id, _ = the_one(resources, "AWS::WAFv2::WebACL")
    _, logging = the_one(resources, "AWS::WAFv2::LoggingConfiguration")
    assert logging["Properties"]["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert {"SingleHeader": {"Name": "authorization"}} in logging["Properties"]["RedactedFields"]
    waf_groups = [
        r
        for r in of_type(resources, "AWS::Logs::LogGroup").values()
        if json.dumps(r["Properties"].get("LogGroupName", "")).startswith('{"Fn::Join": ["", ["aws-waf-logs-')
    ]
    assert len(waf_groups) == 1
    name_parts = waf_groups[0]["Properties"]["LogGroupName"]["Fn::Join"][1]  # prefix, then the deployment suffix
    destination = logging["Properties"]["LogDestinationConfigs"][0]["Fn::Join"][1]
    assert destination[-2].endswith(f":log-group:{name_parts[0]}") and destination[-1] == name_parts[1]


# --------------------------------------------------------------------------- Cognito


def test_the_user_pool_requires_mfa_strong_passwords_and_threat_protection(serving: Template) -> None:
    serving.resource_count_is("AWS::Cognito::UserPool", 1)
    serving.has_resource(
        "AWS::Cognito::UserPool",
        {
            "Properties": Match.object_like(
                {
                    "MfaConfiguration": "ON",
                    "EnabledMfas": ["SOFTWARE_TOKEN_MFA"],
                    "UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"},
                    "UserPoolTier": "PLUS",
                    "DeletionProtection": "ACTIVE",
                    "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
                    "Policies": {
                        "PasswordPolicy": Match.object_like(
                            {
                                "MinimumLength": Match.any_value(),
                                "RequireLowercase": True,
                                "RequireUppercase": True,
                                "RequireNumbers": True,
                                "RequireSymbols": True,
                            }
                        )
                    },
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )
    password = serving.find_resources("AWS::Cognito::UserPool")
    minimum = next(iter(password.values()))["Properties"]["Policies"]["PasswordPolicy"]["MinimumLength"]
    assert minimum >= 14


def test_the_resource_server_defines_the_scopes_the_handlers_check(resources: dict[str, dict[str, Any]]) -> None:
    _, server = the_one(resources, "AWS::Cognito::UserPoolResourceServer")
    assert server["Properties"]["Identifier"] == RESOURCE_SERVER
    assert [scope["ScopeName"] for scope in server["Properties"]["Scopes"]] == list(SCOPES)


def test_the_machine_client_uses_client_credentials_with_a_secret(resources: dict[str, dict[str, Any]]) -> None:
    server_id, _ = the_one(resources, "AWS::Cognito::UserPoolResourceServer")
    _, client = the_one(resources, "AWS::Cognito::UserPoolClient")
    properties = client["Properties"]
    assert properties["AllowedOAuthFlows"] == ["client_credentials"]
    assert properties["AllowedOAuthFlowsUserPoolClient"] is True
    assert properties["GenerateSecret"] is True
    assert properties["AllowedOAuthScopes"] == [
        {"Fn::Join": ["", [{"Ref": server_id}, f"/{name}"]]} for name in MACHINE_CLIENT_SCOPES
    ]
    assert "admin" not in MACHINE_CLIENT_SCOPES
    the_one(resources, "AWS::Cognito::UserPoolDomain")  # the token endpoint


# --------------------------------------------------------------------------- canary deployments and alarms


def test_code_deploys_are_canaries_that_roll_back_on_the_alarms(resources: dict[str, dict[str, Any]]) -> None:
    group_id, group = the_one(resources, "AWS::CodeDeploy::DeploymentGroup")
    _, alias = the_one(resources, "AWS::Lambda::Alias")
    properties = group["Properties"]
    assert properties["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert properties["AutoRollbackConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in properties["AutoRollbackConfiguration"]["Events"]
    assert properties["AlarmConfiguration"]["Enabled"] is True
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    assert sorted(a["Name"]["Ref"] for a in properties["AlarmConfiguration"]["Alarms"]) == sorted(alarms)
    # CloudFormation hands every change of the alias's version to this deployment group.
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["DeploymentGroupName"] == {"Ref": group_id}
    role = resources[properties["ServiceRoleArn"]["Fn::GetAtt"][0]]
    assert "ManagedPolicyArns" not in role["Properties"]  # named actions, not AWSCodeDeployRoleForLambdaLimited


def test_alarms_watch_the_alias_errors_and_the_stage_5xx(resources: dict[str, dict[str, Any]]) -> None:
    alarms = [a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values()]
    by_metric = {(a["Namespace"], a["MetricName"]): a for a in alarms}
    assert set(by_metric) == {("AWS/Lambda", "Errors"), ("AWS/ApiGateway", "5XXError")}
    function_id, _ = the_one(resources, "AWS::Lambda::Function")
    errors = {d["Name"]: d["Value"] for d in by_metric[("AWS/Lambda", "Errors")]["Dimensions"]}
    assert errors["Resource"] == {"Fn::Join": ["", [{"Ref": function_id}, f":{ALIAS_NAME}"]]}
    # The 5xx alarm names the API and stage by plain strings (to avoid a dependency cycle): they must match.
    _, api = the_one(resources, "AWS::ApiGateway::RestApi")
    _, stage = the_one(resources, "AWS::ApiGateway::Stage")
    server_errors = {d["Name"]: d["Value"] for d in by_metric[("AWS/ApiGateway", "5XXError")]["Dimensions"]}
    assert server_errors == {"ApiName": api["Properties"]["Name"], "Stage": stage["Properties"]["StageName"]}
    assert api["Properties"]["Name"] == API_NAME


def test_alarms_notify_the_alerts_topic(
    resources: dict[str, dict[str, Any]], alerts_topic_import: dict[str, str]
) -> None:
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    assert alarms
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [alerts_topic_import], logical_id
        assert alarm["Properties"]["OKActions"] == [alerts_topic_import], logical_id
        assert alarm["Properties"].get("ActionsEnabled", True) is True


# --------------------------------------------------------------------------- the predict function


def test_the_predict_function_reads_only_the_serving_pointer_and_model_directories(
    resources: dict[str, dict[str, Any]],
) -> None:
    _, function = the_one(resources, "AWS::Lambda::Function")
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {
        action for s in statements for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not {a for a in actions if a.startswith("s3:") and a not in {"s3:GetObject", "s3:ListBucket"}}
    reads = [s for s in statements if s["Action"] == "s3:GetObject"]
    assert len(reads) == 1
    suffixes = sorted(part["Fn::Join"][1][-1] for part in reads[0]["Resource"])
    assert suffixes == sorted([f"/{POINTER_KEY}*", "/runs/*/model/*"])
    environment = function["Properties"]["Environment"]["Variables"]
    assert environment["CLINRISK_BACKEND"] == "aws"
    assert "Fn::ImportValue" in environment["CLINRISK_ARTIFACTS_BUCKET"]
    assert "CLINRISK_SAGEMAKER_ENDPOINT_NAME" not in environment
    assert "KmsKeyArn" in function["Properties"]
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_no_policy_of_the_stack_allows_a_wildcard_action(resources: dict[str, dict[str, Any]]) -> None:
    for type_name in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, policy in of_type(resources, type_name).items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
                assert not [a for a in actions if "*" in a], logical_id


def test_the_api_url_is_published_for_the_approval_links(resources: dict[str, dict[str, Any]]) -> None:
    api_id, _ = the_one(resources, "AWS::ApiGateway::RestApi")
    _, parameter = the_one(resources, "AWS::SSM::Parameter")
    assert parameter["Properties"]["Name"] == "/clinrisk/dev/api-url"
    url = parameter["Properties"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://" and {"Ref": api_id} in url


def test_lambda_mode_has_no_sagemaker_endpoint(serving: Template) -> None:
    serving.resource_count_is("AWS::SageMaker::Endpoint", 0)


def test_the_serving_stack_has_no_nag_finding(synthesized: Synthesized) -> None:
    assert serving_findings(synthesized.validation_report()) == []


# --------------------------------------------------------------------------- the sagemaker serving mode
# Read from `synthesized_variant`, the one synthesis of every non-default option (vpc, sagemaker mode,
# approvals). Promotion creates the endpoint, so no template holds one; the stacks hold what it runs
# as, and who may deploy to it and call it.

PIPELINE = "clinrisk-dev-pipeline"
# The endpoint's name ends with the Pipeline stack's deployment suffix (cdk_app.naming), and is read
# back from its log group's name (/aws/sagemaker/Endpoints/<name>): a reference, in the templates.
ENDPOINT_NAME = "clinrisk-dev-predict-"


def _endpoint_log_group(template: Template) -> str:
    """The logical id of the endpoint's log group, whose name the endpoint's name is read from."""
    (group,) = [
        lid
        for lid, r in template.find_resources("AWS::Logs::LogGroup").items()
        if f"/aws/sagemaker/Endpoints/{ENDPOINT_NAME}" in json.dumps(r["Properties"].get("LogGroupName"))
    ]
    return group


def _is_endpoint_name(value: Any, log_group: str) -> bool:
    """Fn::Select 4 of the log group's name split at '/': the endpoint name."""
    return value == {"Fn::Select": [4, {"Fn::Split": ["/", {"Ref": log_group}]}]}


def findings_under(report: dict[str, Any], path: str) -> list[str]:
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith(path)
    ]


def _functions(template: Template) -> dict[str, dict[str, Any]]:
    return of_type(template.to_json()["Resources"], "AWS::Lambda::Function")


def _environment(function: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def _statements(template: Template) -> list[dict[str, Any]]:
    return [
        statement
        for policy in of_type(template.to_json()["Resources"], "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_no_stack_creates_the_endpoint_promotion_does(synthesized_variant: Synthesized) -> None:
    for stack in synthesized_variant.stacks.values():
        for kind in ("AWS::SageMaker::Endpoint", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Model"):
            assert not of_type(stack.template["Resources"], kind), (stack.stack_name, kind)


def test_the_predict_function_calls_the_endpoint_and_nothing_else_of_sagemaker(
    synthesized_variant: Synthesized,
) -> None:
    template = synthesized_variant.template(SERVING)
    (function,) = _functions(template).values()
    environment = _environment(function)
    name = environment["CLINRISK_SAGEMAKER__ENDPOINT_NAME"]
    assert name["Fn::Select"][0] == 4 and "Fn::ImportValue" in json.dumps(name)  # the Pipeline stack's log group
    sagemaker = [s for s in _statements(template) if any(str(a).startswith("sagemaker:") for a in _actions(s))]
    assert len(sagemaker) == 1 and _actions(sagemaker[0]) == ["sagemaker:InvokeEndpoint"]
    resource = json.dumps(sagemaker[0]["Resource"])
    assert ":endpoint/" in resource and "Fn::ImportValue" in resource


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_the_promote_function_is_told_all_it_needs_to_deploy(synthesized_variant: Synthesized) -> None:
    template = synthesized_variant.template(PIPELINE)
    promote = [f for f in _functions(template).values() if f["Properties"]["Handler"].startswith("lambdas.promote")]
    (function,) = promote
    given = {k.removeprefix("CLINRISK_SAGEMAKER__").lower(): v for k, v in _environment(function).items()
             if k.startswith("CLINRISK_SAGEMAKER__")}  # fmt: skip
    # Values are CloudFormation references here; their presence is what SageMakerServing checks.
    # endpoint_names is a JSON map built from references (checked in the per-task test below).
    placeholders = {k: v if isinstance(v, str) else "x" for k, v in given.items() if k != "endpoint_names"}
    assert SageMakerServing.model_validate(placeholders).missing_for_deployment() == []
    assert _is_endpoint_name(given["endpoint_name"], _endpoint_log_group(template))
    assert "Fn::FindInMap" in json.dumps(given["image_uri"])


def test_promotion_may_create_only_this_endpoints_versions_and_pass_only_its_role(
    synthesized_variant: Synthesized,
) -> None:
    template = synthesized_variant.template(PIPELINE)
    by_action = {a: s for s in _statements(template) for a in _actions(s) if a.startswith("sagemaker:")}
    name = json.dumps({"Fn::Select": [4, {"Fn::Split": ["/", {"Ref": _endpoint_log_group(template)}]}]})
    for action, kind in (("sagemaker:CreateModel", "model"), ("sagemaker:CreateEndpointConfig", "endpoint-config")):
        resource = json.dumps(by_action[action]["Resource"])
        assert f':{kind}/", {name}, "-v*"' in resource, resource
    assert {"sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint"} <= set(by_action)
    roles = of_type(template.to_json()["Resources"], "AWS::IAM::Role")
    execution = [i for i, r in roles.items() if "Endpoint" in i and "ExecutionRole" in i]
    assert len(execution) == 1
    passes = [s for s in _statements(template) if "iam:PassRole" in _actions(s)]
    (pass_role,) = [s for s in passes if s["Resource"] == {"Fn::GetAtt": [execution[0], "Arn"]}]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    trust = roles[execution[0]]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and "aws:SourceAccount" in json.dumps(trust)


def test_the_endpoint_logs_are_encrypted_and_kept_a_year(synthesized_variant: Synthesized) -> None:
    template = synthesized_variant.template(PIPELINE)
    groups = [
        props
        for props in (r["Properties"] for r in template.find_resources("AWS::Logs::LogGroup").values())
        if f"/aws/sagemaker/Endpoints/{ENDPOINT_NAME}" in json.dumps(props.get("LogGroupName"))
    ]
    assert len(groups) == 1 and groups[0]["KmsKeyId"] and groups[0]["RetentionInDays"] == 365


HEART_ENDPOINT_NAME = "clinrisk-dev-heart-disease-"


def _log_groups_by_task(template: Template) -> dict[str, str]:
    """Task -> logical id of the log group its endpoint's name is read from."""
    groups = {}
    for lid, r in template.find_resources("AWS::Logs::LogGroup").items():
        name = json.dumps(r["Properties"].get("LogGroupName"))
        for task, prefix in (("readmission", ENDPOINT_NAME), ("heart-disease", HEART_ENDPOINT_NAME)):
            if f"/aws/sagemaker/Endpoints/{prefix}" in name:
                groups[task] = lid
    return groups


def test_each_task_has_its_own_endpoint_and_both_functions_are_told_which(synthesized_variant: Synthesized) -> None:
    """One serverless endpoint per task (docs/deployment.md): promotion deploys a task's champion to
    that task's endpoint, and predict calls it; readmission keeps the endpoint it had before tasks."""
    pipeline = synthesized_variant.template(PIPELINE)
    groups = _log_groups_by_task(pipeline)
    assert set(groups) == {"readmission", "heart-disease"}
    assert groups["readmission"] == _endpoint_log_group(pipeline)
    (promote,) = [f for f in _functions(pipeline).values() if f["Properties"]["Handler"].startswith("lambdas.promote")]
    names = json.dumps(_environment(promote)["CLINRISK_SAGEMAKER__ENDPOINT_NAMES"])
    for task, group in groups.items():
        assert task in names
        assert json.dumps({"Ref": group}) in names  # each task's name comes from its own log group
    by_action = {a: s for s in _statements(pipeline) for a in _actions(s) if a.startswith("sagemaker:")}
    for action in ("sagemaker:CreateModel", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint"):
        resources = json.dumps(by_action[action]["Resource"])
        assert all(json.dumps({"Ref": group}) in resources for group in groups.values()), action
    serving = synthesized_variant.template(SERVING)
    (function,) = _functions(serving).values()
    environment = _environment(function)
    assert "CLINRISK_SAGEMAKER__ENDPOINT_NAMES" in environment and "CLINRISK_SAGEMAKER__ENDPOINT_NAME" in environment
    (invoke,) = [s for s in _statements(serving) if "sagemaker:InvokeEndpoint" in _actions(s)]
    assert isinstance(invoke["Resource"], list) and len(invoke["Resource"]) == len(groups)


def test_a_task_whose_endpoint_name_would_not_fit_stops_synthesis(tmp_path: Path) -> None:
    stack = Stack(App(), "S")
    source = tmp_path / "source.tar.gz"
    source.write_bytes(b"source")
    bucket, data, logs = s3.Bucket(stack, "Artifacts"), kms.Key(stack, "Data"), kms.Key(stack, "Logs")
    asset = s3_assets.Asset(stack, "Source", path=str(source))

    def endpoint(id: str, tasks: list[str]) -> ServerlessEndpoint:
        return ServerlessEndpoint(stack, id, env_name="dev", tasks=tasks, artifacts_bucket=bucket, data_key=data,
                                  log_key=logs, source=asset)  # fmt: skip

    assert set(endpoint("Fits", ["readmission", "heart-disease"]).endpoint_names) == {"readmission", "heart-disease"}
    with pytest.raises(ConfigError, match=r"^invalid cdk.json context: tasks: task 'coronary-artery-disease-risk'"):
        endpoint("TooLong", ["coronary-artery-disease-risk"])


def test_the_sagemaker_mode_has_no_nag_finding_in_pipeline_or_serving(synthesized_variant: Synthesized) -> None:
    report = synthesized_variant.validation_report()
    assert findings_under(report, "Serving/") == [] and findings_under(report, "Pipeline/") == []


# --------------------------------------------------------------------------- acknowledging wildcard resources


@pytest.mark.parametrize(
    ("reference", "flat"),
    [
        ("arn:aws:s3:::b/${x}*", "arn:aws:s3:::b/<x>*"),
        ({"Ref": "AWS::Region"}, "<AWS::Region>"),
        ({"Fn::GetAtt": ["Logs", "Arn"]}, "<Logs.Arn>"),
        ({"Fn::ImportValue": "stack:Export"}, "stack:Export"),
        ({"Fn::Join": ["", [{"Fn::ImportValue": "s:E"}, "/runs/*"]]}, "s:E/runs/*"),
        ({"Fn::Sub": "arn:${AWS::Partition}:x"}, "arn:<AWS::Partition>:x"),
        ({"Fn::Select": [0, ["a"]]}, '{"Fn::Select":[0,["a"]]}'),
    ],
)
def test_references_are_flattened_as_cdk_nag_names_them(reference: Any, flat: str) -> None:
    assert flatten_reference(reference) == flat


def test_only_wildcard_resources_of_allow_statements_are_listed() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": ["arn:aws:s3:::b/a*", "arn:aws:s3:::b/c"]},
            {"Effect": "Allow", "Action": "xray:PutTraceSegments", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/a*"},
        ]
    }
    assert wildcard_resources(document) == ["arn:aws:s3:::b/a*", "*"]


def test_a_wildcard_acknowledgment_needs_a_specific_reason() -> None:
    with pytest.raises(ValueError, match="specific reason"):
        acknowledge_wildcard_resources(Stack(App(), "S"), "Not applicable.")
