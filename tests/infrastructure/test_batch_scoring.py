"""The batch-scoring stack: its state machine, its role and its functions, matched by property
(never by logical id) on the synthesized template that `cdk deploy` would deploy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk_app.constructs.batch_state_machine import map_max_concurrency
from cdk_app.state_machine import definition_text, substitution_variables
from clinrisk.batch.cloud import DEFINITION_FILE
from tests.infrastructure.conftest import Synthesized

pytestmark = pytest.mark.infrastructure

STACK = "clinrisk-dev-batch-scoring"
STATE_MACHINE_NAME = "clinrisk-dev-batch-scoring"
HANDLERS = {
    "plan": "lambdas.batch_scoring.handler.plan",
    "score": "lambdas.batch_scoring.handler.score_chunk",
    "finish": "lambdas.batch_scoring.handler.finish",
}


@pytest.fixture(scope="module")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template(STACK)


@pytest.fixture(scope="module")
def raw(synthesized: Synthesized) -> dict[str, Any]:
    document: dict[str, Any] = synthesized.stacks[STACK].template
    return document


def _resources(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in raw["Resources"].items() if r["Type"] == kind}


def _functions(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name (plan, score, finish) → the function resource."""
    by_handler = {r["Properties"]["Handler"]: r for r in _resources(raw, "AWS::Lambda::Function").values()}
    assert set(by_handler) == set(HANDLERS.values())
    return {name: by_handler[handler] for name, handler in HANDLERS.items()}


def _statements(raw: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every Allow statement of the policies attached to a role of this stack."""
    return [
        statement
        for policy in _resources(raw, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _object_suffixes(statements: list[dict[str, Any]], action: str) -> set[str]:
    """The key patterns (after the bucket ARN) an action is allowed on."""
    suffixes: set[str] = set()
    for statement in statements:
        if action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                if isinstance(resource, dict) and "Fn::Join" in resource:
                    suffixes.add(str(resource["Fn::Join"][1][-1]))
    return suffixes


def _role_of(function: dict[str, Any]) -> str:
    return str(function["Properties"]["Role"]["Fn::GetAtt"][0])


# --------------------------------------------------------------------------- the state machine


def test_state_machine_is_standard_logged_traced_and_named(template: Template, raw: dict[str, Any]) -> None:
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": STATE_MACHINE_NAME,
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like(
                {
                    "Level": "ALL",
                    "Destinations": [
                        {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}}}
                    ],
                }
            ),
        },
    )
    [machine] = _resources(raw, "AWS::StepFunctions::StateMachine").values()
    group = machine["Properties"]["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    log_group = raw["Resources"][group["Fn::GetAtt"][0]]["Properties"]
    assert "KmsKeyId" in log_group and log_group["RetentionInDays"] >= 365


def test_the_deployed_definition_is_the_asl_file_with_every_variable_given(raw: dict[str, Any]) -> None:
    [machine] = _resources(raw, "AWS::StepFunctions::StateMachine").values()
    properties = machine["Properties"]
    assert properties["DefinitionString"] == definition_text(DEFINITION_FILE)
    assert set(properties["DefinitionSubstitutions"]) == substitution_variables(definition_text(DEFINITION_FILE))
    assert json.loads(properties["DefinitionString"])["TimeoutSeconds"] > 0


def test_the_map_reads_and_writes_the_data_bucket(raw: dict[str, Any], synthesized: Synthesized) -> None:
    [machine] = _resources(raw, "AWS::StepFunctions::StateMachine").values()
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    foundation = synthesized.stacks["clinrisk-dev-foundation"].template
    data_bucket = next(lid for lid in foundation["Resources"] if lid.startswith("BucketsData"))
    assert data_bucket in json.dumps(substitutions["WorkBucket"])
    assert substitutions["MapResultsPrefix"] == "batch-scoring/map-results"


def test_the_role_runs_the_distributed_map_on_its_own_executions_only(raw: dict[str, Any]) -> None:
    [machine] = _resources(raw, "AWS::StepFunctions::StateMachine").values()
    statements = _statements(raw, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])

    def resources(action: str) -> list[str]:
        found = [r for s in statements if action in _as_list(s["Action"]) for r in _as_list(s["Resource"])]
        return [json.dumps(r) for r in found]

    assert len(resources("states:StartExecution")) == 1
    assert f':stateMachine:{STATE_MACHINE_NAME}"' in resources("states:StartExecution")[0]
    executions = resources("states:DescribeExecution")
    assert executions == resources("states:StopExecution")
    assert {e.rsplit(":execution:", 1)[1] for e in executions} == {
        f'{STATE_MACHINE_NAME}/ScoreChunks:*"]]}}',
        f'{STATE_MACHINE_NAME}:*"]]}}',
    }
    invoked = {
        r["Fn::GetAtt"][0]
        for s in statements
        if "lambda:InvokeFunction" in _as_list(s["Action"])
        for r in s["Resource"]
    }
    assert invoked == set(_resources(raw, "AWS::Lambda::Function"))
    assert _object_suffixes(statements, "s3:GetObject") >= {"/batch-scoring/work/*/manifest.json"}
    assert _object_suffixes(statements, "s3:PutObject") == {"/batch-scoring/map-results/*"}
    assert any("sns:Publish" in _as_list(s["Action"]) for s in statements)


# --------------------------------------------------------------------------- the functions


def test_each_function_touches_only_its_own_keys(raw: dict[str, Any]) -> None:
    functions = _functions(raw)
    writes = {name: _object_suffixes(_statements(raw, _role_of(f)), "s3:PutObject") for name, f in functions.items()}
    reads = {name: _object_suffixes(_statements(raw, _role_of(f)), "s3:GetObject") for name, f in functions.items()}
    assert writes == {
        "plan": {
            "/batch-scoring/work/*/chunks/*",
            "/batch-scoring/work/*/manifest.json*",
            "/batch-scoring/work/*/plan.json*",
        },
        "score": {"/batch-scoring/work/*/scored/*"},
        "finish": {"/batch-scoring/output/*"},
    }
    assert reads == {
        "plan": {"/batch-scoring/input/*", "/serving/champion.json*"},
        "score": {"/batch-scoring/work/*/chunks/*", "/runs/*/model/*"},
        "finish": {"/batch-scoring/work/*/plan.json*", "/batch-scoring/work/*/scored/*"},
    }


def test_the_functions_know_their_locations(raw: dict[str, Any]) -> None:
    for function in _functions(raw).values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["CLINRISK_BACKEND"] == "aws"
        assert variables["CLINRISK_BATCH_WORK_PREFIX"] == "batch-scoring/work"
        for name in ("CLINRISK_BATCH_WORK_BUCKET", "CLINRISK_BATCH_INPUT_LOCATIONS", "CLINRISK_BATCH_OUTPUT_LOCATIONS"):
            assert name in variables
        assert "/batch-scoring/input/" in json.dumps(variables["CLINRISK_BATCH_INPUT_LOCATIONS"])
        assert "/batch-scoring/output/" in json.dumps(variables["CLINRISK_BATCH_OUTPUT_LOCATIONS"])


def test_score_reserves_the_maps_concurrency(synthesized_variant: Synthesized) -> None:
    # With reservedConcurrency=all; by default only the promotion lock reserves (test_first_deploy.py).
    functions = _functions(synthesized_variant.stacks[STACK].template)
    assert functions["score"]["Properties"]["ReservedConcurrentExecutions"] >= map_max_concurrency()


def _asset_directory(synthesized: Synthesized, function: dict[str, Any]) -> Path:
    """The bundle directory CDK staged for a function, found through the stack's asset manifest."""
    key = function["Properties"]["Code"]["S3Key"]
    manifest = json.loads((synthesized.outdir / "BatchScoring.assets.json").read_text())
    for asset in manifest["files"].values():
        if any(d["objectKey"] == key for d in asset["destinations"].values()):
            return synthesized.outdir / asset["source"]["path"]
    raise AssertionError(f"no asset for {key}")


def test_plan_ships_pandas_and_the_scorers_stay_light(raw: dict[str, Any], synthesized: Synthesized) -> None:
    functions = _functions(raw)
    bundles = {name: _asset_directory(synthesized, f) for name, f in functions.items()}
    assert (bundles["plan"] / "pandas").is_dir()
    for name in ("score", "finish"):
        assert (bundles[name] / "numpy").is_dir() and not (bundles[name] / "pandas").exists()
    for bundle in bundles.values():
        assert (bundle / "lambdas" / "batch_scoring" / "handler.py").is_file()
