"""Monitoring, checked app-wide on the synthesized templates: every alarm pages the alerts topic
(the Monitoring stack's also say when they clear), every clinrisk function has an Errors and a Throttles alarm, every
state machine a failed- and a timed-out-executions alarm, the API its 5xx and p99-latency
alarms, nothing is alarmed twice, and one dashboard shows it all.

Alarms and the resources they watch may sit in different stacks, so references are followed
as CloudFormation follows them: an `Fn::ImportValue` leads to the exporting stack's output.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infrastructure.conftest import CDK_JSON, Synthesized

pytestmark = pytest.mark.infrastructure

FOUNDATION = "clinrisk-dev-foundation"
DEPLOYED_TASKS = set(json.loads(CDK_JSON.read_text())["context"]["tasks"])
MONITORING = "clinrisk-dev-monitoring"
RESOURCE_DIMENSION = {"AWS/Lambda": "FunctionName", "AWS/States": "StateMachineArn", "AWS/ApiGateway": "ApiName"}

Identity = tuple[str, str]  # (stack name, logical id) of a resource, or ("literal", value)


def _resources(synthesized: Synthesized, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for stack_name, stack in synthesized.stacks.items():
        for logical_id, resource in stack.template.get("Resources", {}).items():
            if resource["Type"] == kind:
                yield stack_name, logical_id, resource.get("Properties", {})


def _exports(synthesized: Synthesized) -> dict[str, tuple[str, Any]]:
    """Export name → (exporting stack, exported value)."""
    found: dict[str, tuple[str, Any]] = {}
    for stack_name, stack in synthesized.stacks.items():
        for output in stack.template.get("Outputs", {}).values():
            if "Export" in output:
                found[output["Export"]["Name"]] = (stack_name, output["Value"])
    return found


def identity(synthesized: Synthesized, stack_name: str, value: Any) -> Identity:
    """The resource a reference in `stack_name` points at, following imports to their export."""
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        exporter, exported = _exports(synthesized)[value["Fn::ImportValue"]]
        return identity(synthesized, exporter, exported)
    if isinstance(value, dict) and "Ref" in value:
        return (stack_name, value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return (stack_name, value["Fn::GetAtt"][0])
    return ("literal", json.dumps(value, sort_keys=True))


@pytest.fixture(scope="module")
def alerts_topic(synthesized: Synthesized) -> Identity:
    topics = [lid for _, lid, props in _resources(synthesized, "AWS::SNS::Topic") if "alerts" in props["DisplayName"]]
    assert len(topics) == 1, topics
    return (FOUNDATION, topics[0])


@pytest.fixture(scope="module")
def alarms(synthesized: Synthesized) -> list[tuple[str, str, dict[str, Any]]]:
    found = list(_resources(synthesized, "AWS::CloudWatch::Alarm"))
    assert found
    return found


def _watched(synthesized: Synthesized, stack_name: str, props: dict[str, Any]) -> tuple[str, str, Identity] | None:
    """(namespace, metric, resource) of an alarm on one metric of one AWS resource."""
    namespace = props.get("Namespace")
    key = RESOURCE_DIMENSION.get(str(namespace))
    dimensions = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
    if key is None or key not in dimensions:
        return None
    return (str(namespace), props["MetricName"], identity(synthesized, stack_name, dimensions[key]))


@pytest.fixture(scope="module")
def watched(synthesized: Synthesized, alarms: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, Identity]]:
    return [w for stack_name, _, props in alarms if (w := _watched(synthesized, stack_name, props)) is not None]


def _app_functions(synthesized: Synthesized) -> list[Identity]:
    # Every clinrisk function runs a handler from lambdas/ (PythonFunction); CDK's own helpers do not.
    functions = [
        (stack, lid)
        for stack, lid, props in _resources(synthesized, "AWS::Lambda::Function")
        if str(props.get("Handler") or props.get("ImageConfig", {}).get("Command", [""])[0]).startswith("lambdas.")
    ]
    assert len(functions) >= 5, functions
    return functions


def _targets(synthesized: Synthesized, stack_name: str, props: dict[str, Any], key: str) -> list[Identity]:
    return [identity(synthesized, stack_name, action) for action in props.get(key, [])]


def _noticed(synthesized: Synthesized) -> set[Identity]:
    """Alarms whose state changes the alarm-notice rule sends to the notice function (which publishes to
    the alerts topic: tests/unit/monitoring/test_notices.py), followed across stacks."""
    template = synthesized.stacks[MONITORING].template
    [rule] = [r["Properties"] for lid, r in template["Resources"].items()
              if r["Type"] == "AWS::Events::Rule" and lid.startswith("AlarmNotices")]  # fmt: skip
    assert rule["EventPattern"]["detail-type"] == ["CloudWatch Alarm State Change"]
    [target] = rule["Targets"]
    assert identity(synthesized, MONITORING, target["Arn"])[1].startswith("AlarmNoticesFunction")
    env = template["Resources"][identity(synthesized, MONITORING, target["Arn"])[1]]["Properties"]["Environment"]
    assert identity(synthesized, MONITORING, env["Variables"]["CLINRISK_NOTICE_TOPIC_ARN"]) == (
        FOUNDATION, next(iter(_alerts(synthesized)))
    )  # fmt: skip
    return {identity(synthesized, MONITORING, arn) for arn in rule["EventPattern"]["resources"]}


def _alerts(synthesized: Synthesized) -> list[str]:
    return [lid for _, lid, props in _resources(synthesized, "AWS::SNS::Topic") if "alerts" in props["DisplayName"]]


def test_every_alarm_of_the_app_pages_the_alerts_topic(
    synthesized: Synthesized, alarms: list[tuple[str, str, dict[str, Any]]], alerts_topic: Identity
) -> None:
    noticed = _noticed(synthesized)
    for stack_name, logical_id, props in alarms:
        paged = alerts_topic in _targets(synthesized, stack_name, props, "AlarmActions")
        assert paged or (stack_name, logical_id) in noticed, f"{stack_name}/{logical_id}"


def test_the_monitoring_alarms_also_say_when_they_clear(
    synthesized: Synthesized, alarms: list[tuple[str, str, dict[str, Any]]], alerts_topic: Identity
) -> None:
    ours = [(stack_name, lid, props) for stack_name, lid, props in alarms if stack_name == MONITORING]
    assert ours
    noticed = _noticed(synthesized)  # every state change, OK included
    for stack_name, logical_id, props in ours:
        cleared = alerts_topic in _targets(synthesized, stack_name, props, "OKActions")
        assert cleared or (stack_name, logical_id) in noticed, f"{stack_name}/{logical_id}"


def test_the_model_alarms_watch_every_version_treat_missing_data_as_fine_and_are_noticed(
    synthesized: Synthesized, alarms: list[tuple[str, str, dict[str, Any]]]
) -> None:
    model = {lid: props for stack, lid, props in alarms if stack == MONITORING and lid.startswith("ModelAlarms")}
    expressions = [props["Metrics"][0]["Expression"] for props in model.values()]
    # One alarm per metric and deployed task (cdk.json's tasks), each watching that task only.
    watched = {(e.split('"')[1], e.split("WHERE task = '")[1].rstrip("'")) for e in expressions}
    metrics = {"ScoreDrift", "HighRiskRate", "RefusedShare", "RealizedAUC", "ObservedToExpected",
               "SubgroupAUCGapAboveLimit"}  # fmt: skip
    assert watched == {(metric, task) for metric in metrics for task in DEPLOYED_TASKS}
    for props in model.values():
        assert props["TreatMissingData"] == "notBreaching"
    noticed = _noticed(synthesized)
    assert {(MONITORING, lid) for lid in model} <= noticed
    drift = [(stack, lid) for stack, lid, props in alarms if props.get("MetricName") == "FeatureDrift"]
    assert len(drift) == len(DEPLOYED_TASKS) and set(drift) <= noticed


def test_each_tasks_high_risk_alarm_is_at_its_own_level(alarms: list[tuple[str, str, dict[str, Any]]]) -> None:
    """A task file's `monitoring.high_risk_rate_alarm` sets its task's alarm (heart disease: half of the
    referred patients have the disease); a task without one keeps the deployment's 0.20."""
    from clinrisk.settings import MonitoringRules
    from clinrisk.taskspec.catalogue import find_task

    expressions = [
        (props["Metrics"][0]["Expression"], props["Threshold"])
        for stack, lid, props in alarms
        if stack == MONITORING and lid.startswith("ModelAlarms")
    ]
    levels = {e.split("WHERE task = '")[1].rstrip("'"): level for e, level in expressions if '"HighRiskRate"' in e}
    expected = {
        task: find_task(task).spec.monitoring.high_risk_rate_alarm or MonitoringRules().high_risk_rate_alarm
        for task in DEPLOYED_TASKS
    }
    assert levels == expected
    assert (levels["readmission"], levels["heart-disease"]) == (0.2, 0.7)  # cdk.json deploys both


def test_every_function_has_an_errors_and_a_throttles_alarm(
    synthesized: Synthesized, watched: list[tuple[str, str, Identity]]
) -> None:
    for function in _app_functions(synthesized):
        for metric in ("Errors", "Throttles"):
            assert ("AWS/Lambda", metric, function) in watched, f"no {metric} alarm for {function}"


def test_every_state_machine_has_failed_and_timed_out_alarms(
    synthesized: Synthesized, watched: list[tuple[str, str, Identity]]
) -> None:
    machines = [(stack, lid) for stack, lid, _ in _resources(synthesized, "AWS::StepFunctions::StateMachine")]
    assert len(machines) >= 2  # retraining and batch scoring
    for machine in machines:
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
            assert ("AWS/States", metric, machine) in watched, f"no {metric} alarm for {machine}"


def test_the_api_has_5xx_and_p99_latency_alarms(
    synthesized: Synthesized, alarms: list[tuple[str, str, dict[str, Any]]], watched: list[tuple[str, str, Identity]]
) -> None:
    apis = [props["Name"] for _, _, props in _resources(synthesized, "AWS::ApiGateway::RestApi")]
    assert apis, "the Serving stack has no REST API"
    for name in apis:
        api = ("literal", json.dumps(name))
        assert ("AWS/ApiGateway", "5XXError", api) in watched
        latency = [
            props
            for stack_name, _, props in alarms
            if _watched(synthesized, stack_name, props) == ("AWS/ApiGateway", "Latency", api)
        ]
        assert [props.get("ExtendedStatistic") for props in latency] == ["p99"]


def test_nothing_is_alarmed_twice(watched: list[tuple[str, str, Identity]]) -> None:
    # The Serving stack's canary alarms (predict errors, API 5xx) are reused, not duplicated.
    assert [signal for signal, count in Counter(watched).items() if count > 1] == []


def test_one_dashboard_shows_every_function_state_machine_and_alarm(
    synthesized: Synthesized, alarms: list[tuple[str, str, dict[str, Any]]]
) -> None:
    dashboards = list(_resources(synthesized, "AWS::CloudWatch::Dashboard"))
    assert [stack for stack, _, _ in dashboards] == [MONITORING]
    body = dashboards[0][2]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    shown = {identity(synthesized, MONITORING, part) for part in parts if isinstance(part, dict)}
    for function in _app_functions(synthesized):
        assert function in shown, f"{function} is not on the dashboard"
    for stack, lid, _ in _resources(synthesized, "AWS::StepFunctions::StateMachine"):
        assert (stack, lid) in shown, f"{stack}/{lid} is not on the dashboard"
    for stack, lid, _ in alarms:
        assert (stack, lid) in shown, f"alarm {stack}/{lid} is not on the dashboard"
    text = "".join(part for part in parts if isinstance(part, str))
    assert '"type":"alarm"' in text  # the alarm-status widget


# --------------------------------------------------------------------------- the variant (sagemaker mode, VPC)


def test_the_sagemaker_endpoint_has_error_and_latency_alarms_paging_the_alerts_topic(
    synthesized_variant: Synthesized,
) -> None:
    topics = [lid for _, lid, p in _resources(synthesized_variant, "AWS::SNS::Topic") if "alerts" in p["DisplayName"]]
    alerts = (FOUNDATION, topics[0])
    on_endpoint = {
        props["MetricName"]: (stack_name, props)
        for stack_name, _, props in _resources(synthesized_variant, "AWS::CloudWatch::Alarm")
        if props.get("Namespace") == "AWS/SageMaker"
    }
    assert set(on_endpoint) == {"Invocation5XXErrors", "Invocation4XXErrors", "ModelLatency"}
    for stack_name, props in on_endpoint.values():
        dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        assert dimensions["VariantName"] == "AllTraffic"
        assert "Fn::ImportValue" in json.dumps(dimensions["EndpointName"])  # the Pipeline stack's per-deployment name
        for key in ("AlarmActions", "OKActions"):
            assert alerts in _targets(synthesized_variant, stack_name, props, key)
    assert on_endpoint["ModelLatency"][1]["ExtendedStatistic"] == "p99"
    assert on_endpoint["ModelLatency"][1]["Threshold"] == 3_000_000  # microseconds


def test_the_default_app_has_no_endpoint_alarm(alarms: list[tuple[str, str, dict[str, Any]]]) -> None:
    assert [props for _, _, props in alarms if props.get("Namespace") == "AWS/SageMaker"] == []
