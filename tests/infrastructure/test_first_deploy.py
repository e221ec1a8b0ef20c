"""What a first `cdk deploy`, a destroy and a second deploy, and a first run would hit (issue 9, part 3),
checked on both syntheses: the default app (`synthesized`) and every non-default option
(`synthesized_variant`: vpc, servingMode=sagemaker, approvals, reservedConcurrency=all,
apiGatewayAccountRole=false).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cdk_app.concurrency import required_quota
from cdk_app.constructs.batch_state_machine import map_max_concurrency
from cdk_app.constructs.mlflow_server import MLFLOW_VERSION
from cdk_app.constructs.predict_service import TIMEOUT as PREDICT_TIMEOUT
from cdk_app.constructs.training_job import METRICS_NAMESPACE
from clinrisk.adapters.sagemaker_endpoint import worst_case_invoke_seconds
from clinrisk.settings import SageMakerServing
from tests.infrastructure.conftest import CDK_JSON, Synthesized

pytestmark = pytest.mark.infrastructure

API_GATEWAY_LIMIT_SECONDS = 29  # API Gateway's integration timeout for a REST API
# What the predict handler does around the endpoint call (parse, validate, serialise, log).
HANDLER_MARGIN_SECONDS = 2.0
MLFLOW_CUSTOM_ENDPOINT = "SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT"  # read by sagemaker_mlflow.mlflow_sagemaker_helpers


def _resources(synthesized: Synthesized, resource_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(stack name, logical id, whole resource) of every resource of `resource_type` in the app."""
    for stack_name, stack in synthesized.stacks.items():
        for logical_id, resource in stack.template["Resources"].items():
            if resource["Type"] == resource_type:
                yield stack_name, logical_id, resource


def _functions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Every clinrisk Lambda function's properties, by handler (not the CDK's own custom-resource handlers)."""
    found = {}
    for _, _, r in _resources(synthesized, "AWS::Lambda::Function"):
        # A zip function names its handler; an image function (the monitoring image) its CMD.
        handler = r["Properties"].get("Handler") or r["Properties"].get("ImageConfig", {}).get("Command", [""])[0]
        if handler.startswith("lambdas."):
            found[handler] = r["Properties"]
    return found


# --------------------------------------------------------------------------- MLflow versions


def test_the_tracking_server_runs_the_pinned_mlflow(synthesized: Synthesized) -> None:
    """Left out, MlflowVersion is SageMaker's default of the day; the Lambda locks pin mlflow-skinny to
    this minor (tests/unit/test_mlflow_versions.py)."""
    (server,) = [r["Properties"] for _, _, r in _resources(synthesized, "AWS::SageMaker::MlflowTrackingServer")]
    assert server["MlflowVersion"] == MLFLOW_VERSION


# --------------------------------------------------------------------------- reserved concurrency


def _reserved(synthesized: Synthesized) -> dict[str, int]:
    return {
        handler: props["ReservedConcurrentExecutions"]
        for handler, props in _functions(synthesized).items()
        if "ReservedConcurrentExecutions" in props
    }


def test_by_default_only_the_promotion_lock_reserves_concurrency(synthesized: Synthesized) -> None:
    """Lambda keeps 100 executions of the account's quota unreserved: the default needs a quota of 101."""
    assert _reserved(synthesized) == {"lambdas.promote.handler.handler": 1}
    assert required_quota(sum(_reserved(synthesized).values())) == 101


def test_reserved_concurrency_all_gives_every_function_its_share(synthesized_variant: Synthesized) -> None:
    reserved = _reserved(synthesized_variant)
    assert set(reserved) == set(_functions(synthesized_variant))
    assert reserved["lambdas.promote.handler.handler"] == 1
    assert reserved["lambdas.batch_scoring.handler.score_chunk"] >= map_max_concurrency()
    assert required_quota(sum(reserved.values())) == 100 + sum(reserved.values())


def test_functions_without_a_reservation_are_acknowledged_not_silenced(synthesized: Synthesized) -> None:
    # HIPAA.Security-LambdaConcurrency would stop the synthesis; each unreserved function carries a reason.
    assert synthesized.nag_findings() == []


# --------------------------------------------------------------------------- MLflow through the VPC endpoint


def test_in_the_vpc_evaluate_and_promote_reach_mlflow_through_the_endpoints_own_name(
    synthesized_variant: Synthesized,
) -> None:
    """SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT replaces https://<region>.experiments.sagemaker.aws in the plugin:
    https:// + the DNS name of the first DnsEntries item ("<zone id>:<name>") of the experiments endpoint."""
    (experiments,) = [
        lid
        for _, lid, r in _resources(synthesized_variant, "AWS::EC2::VPCEndpoint")
        if "experiments" in json.dumps(r["Properties"]["ServiceName"])
    ]
    exports = {
        output["Export"]["Name"]: output["Value"]
        for stack in synthesized_variant.stacks.values()
        for output in stack.template.get("Outputs", {}).values()
        if "Export" in output
    }
    functions = _functions(synthesized_variant)
    for handler in ("lambdas.evaluate.handler.handler", "lambdas.promote.handler.handler"):
        url = functions[handler]["Environment"]["Variables"][MLFLOW_CUSTOM_ENDPOINT]
        scheme, host = url["Fn::Join"][1]
        assert scheme == "https://"
        assert host["Fn::Select"][0] == 1 and host["Fn::Select"][1]["Fn::Split"][0] == ":"
        first_entry = host["Fn::Select"][1]["Fn::Split"][1]
        assert first_entry["Fn::Select"][0] == 0
        imported = first_entry["Fn::Select"][1]["Fn::Split"][1]["Fn::ImportValue"]
        assert exports[imported] == {"Fn::Join": ["||", {"Fn::GetAtt": [experiments, "DnsEntries"]}]}
    assert MLFLOW_CUSTOM_ENDPOINT not in functions["lambdas.validate.handler.handler"]["Environment"]["Variables"]


def test_outside_a_vpc_mlflow_is_reached_by_its_public_name(synthesized: Synthesized) -> None:
    for handler, props in _functions(synthesized).items():
        assert MLFLOW_CUSTOM_ENDPOINT not in props.get("Environment", {}).get("Variables", {}), handler


# --------------------------------------------------------------------------- the training role


def test_the_training_role_may_put_metrics_in_the_training_jobs_namespace_only(synthesized: Synthesized) -> None:
    statements = [
        statement
        for _, _, policy in _resources(synthesized, "AWS::IAM::Policy")
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "cloudwatch:PutMetricData" in json.dumps(statement["Action"])
    ]
    training = [s for s in statements if s.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace")]
    assert len(training) == 1
    assert training[0]["Condition"] == {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}}
    assert METRICS_NAMESPACE == "/aws/sagemaker/TrainingJobs"


# --------------------------------------------------------------------------- retained log groups


def _references(value: Any) -> set[str]:
    """Every Ref and GetAtt target inside a CloudFormation value."""
    if isinstance(value, dict):
        found: set[str] = set()
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            else:
                found |= _references(inner)
        return found
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value)) if value else set()
    return set()


def fixed_retained_log_groups(template: dict[str, Any]) -> list[str]:
    """Retained log groups whose name is the same on every deployment of the stack: after `cdk destroy`
    keeps them, the next `cdk deploy` fails with "already exists". A name is new per deployment when it
    is generated (no LogGroupName) or refers to the stack's id or to a resource the stack creates."""
    resources = template["Resources"]
    fixed = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Logs::LogGroup" or resource.get("DeletionPolicy") != "Retain":
            continue
        name = resource["Properties"].get("LogGroupName")
        if name is None:
            continue
        made_per_deployment = {"AWS::StackId"} | {r for r in resources if r != logical_id}
        if not _references(name) & made_per_deployment:
            fixed.append(logical_id)
    return fixed


def test_the_check_finds_a_fixed_name() -> None:
    template = {
        "Resources": {
            "Fixed": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Retain", "Properties": {"LogGroupName": "x"}},
            "Joined": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "Properties": {"LogGroupName": {"Fn::Join": ["", ["a-", {"Ref": "AWS::Region"}]]}},
            },
            "Unique": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "Properties": {"LogGroupName": {"Fn::Join": ["", ["a-", {"Ref": "AWS::StackId"}]]}},
            },
            "Generated": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Retain", "Properties": {}},
        }
    }
    assert fixed_retained_log_groups(template) == ["Fixed", "Joined"]


@pytest.mark.parametrize("which", ["synthesized", "synthesized_variant"])
def test_no_retained_log_group_blocks_a_redeploy_after_destroy(which: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(which)
    retained = list(_resources(synthesized, "AWS::Logs::LogGroup"))
    assert retained and all(r.get("DeletionPolicy") == "Retain" for _, _, r in retained)
    found = {name: fixed_retained_log_groups(stack.template) for name, stack in synthesized.stacks.items()}
    assert {name: ids for name, ids in found.items() if ids} == {}


def test_the_waf_log_group_keeps_the_prefix_waf_requires(synthesized: Synthesized) -> None:
    (waf,) = [r for _, _, r in _resources(synthesized, "AWS::WAFv2::LoggingConfiguration")]
    destination = json.dumps(waf["Properties"]["LogDestinationConfigs"])
    assert ":log-group:aws-waf-logs-clinrisk-dev-api-" in destination and "AWS::StackId" in destination


def test_the_endpoint_and_its_log_group_are_named_per_deployment(synthesized_variant: Synthesized) -> None:
    groups = [
        r["Properties"]["LogGroupName"]
        for _, _, r in _resources(synthesized_variant, "AWS::Logs::LogGroup")
        if "/aws/sagemaker/Endpoints/" in json.dumps(r["Properties"].get("LogGroupName"))
    ]
    # One endpoint per deployed task (cdk.json's tasks), each log group named per deployment.
    assert len(groups) == len(json.loads(CDK_JSON.read_text())["context"]["tasks"])
    for name in groups:
        assert "/aws/sagemaker/Endpoints/clinrisk-dev-" in json.dumps(name) and "AWS::StackId" in json.dumps(name)


# --------------------------------------------------------------------------- API Gateway's account setting


def _account_role_policy(synthesized: Synthesized) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    (account,) = [(s, r) for s, _, r in _resources(synthesized, "AWS::ApiGateway::Account")]
    stack, account_resource = account
    resources = synthesized.stacks[stack].template["Resources"]
    role_id = account_resource["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    policies = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    (policy,) = [r for r in policies if {"Ref": role_id} in r["Properties"].get("Roles", [])]
    return account_resource, resources[role_id], policy


def test_the_account_logging_role_serves_every_api_and_outlives_the_stack(synthesized: Synthesized) -> None:
    """AWS::ApiGateway::Account is one per account and region: the role it names writes every API's logs,
    so setting it takes no logging away from other APIs, and it stays when clinrisk is destroyed."""
    account, role, policy = _account_role_policy(synthesized)
    for resource in (account, role, policy):
        assert resource.get("DeletionPolicy") == "Retain" and resource.get("UpdateReplacePolicy") == "Retain"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    writes = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    (write,) = writes
    assert json.dumps(write["Resource"]).endswith(':log-group:*"]]}')  # every log group, not this API's only
    assert "logs:CreateLogGroup" in write["Action"] and "logs:CreateLogStream" in write["Action"]


def test_with_the_opt_out_the_accounts_own_role_is_left_alone(synthesized_variant: Synthesized) -> None:
    assert list(_resources(synthesized_variant, "AWS::ApiGateway::Account")) == []
    (stage,) = [r["Properties"] for _, _, r in _resources(synthesized_variant, "AWS::ApiGateway::Stage")]
    # Execution logging stays on: it uses whichever role the account already has.
    assert any(s.get("LoggingLevel") == "INFO" and s.get("DataTraceEnabled") is False for s in stage["MethodSettings"])


# --------------------------------------------------------------------------- the sagemaker serving mode


def test_the_endpoint_call_fits_in_the_predict_function_and_api_gateway(synthesized_variant: Synthesized) -> None:
    """The predict function's runtime client, built from the settings it is deployed with, gives up
    (connect and read timeouts, retries and their longest backoff) before the function times out,
    and the function times out no later than API Gateway's 29 s."""
    (predict,) = [p for h, p in _functions(synthesized_variant).items() if h.startswith("lambdas.predict")]
    variables = predict["Environment"]["Variables"]
    given: dict[str, Any] = {
        k.removeprefix("CLINRISK_SAGEMAKER__").lower(): v if isinstance(v, str) else "clinrisk-dev-predict-0"
        for k, v in variables.items()
        if k.startswith("CLINRISK_SAGEMAKER__")
    }
    # The endpoint names per task are a JSON map resolved at deploy time; only their shape matters here.
    given["endpoint_names"] = {"readmission": "clinrisk-dev-predict-0"}
    settings = SageMakerServing.model_validate(given)
    assert predict["Timeout"] <= API_GATEWAY_LIMIT_SECONDS
    assert predict["Timeout"] == PREDICT_TIMEOUT.to_seconds()
    assert worst_case_invoke_seconds(settings) + HANDLER_MARGIN_SECONDS <= predict["Timeout"]
