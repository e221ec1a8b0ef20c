"""The app's alarms: one per signal worth waking someone for, each alarming (and clearing) to the alerts topic.

| what | metric | alarm when |
|---|---|---|
| every clinrisk Lambda | `AWS/Lambda` Errors, 5-minute sum | ≥ 1 |
| every clinrisk Lambda | `AWS/Lambda` Throttles, 5-minute sum | ≥ 1 |
| every state machine | `AWS/States` ExecutionsFailed, 5-minute sum | ≥ 1 |
| every state machine | `AWS/States` ExecutionsTimedOut, 5-minute sum | ≥ 1 |
| the prediction API | `AWS/ApiGateway` 5XXError, 5-minute sum | ≥ 5 |
| the prediction API | `AWS/ApiGateway` Latency, p99 over 5 minutes, 3 periods in a row | > 3 s |
| the endpoint (`sagemaker` mode) | `AWS/SageMaker` Invocation5XXErrors, 5-minute sum | ≥ 1 |
| the endpoint (`sagemaker` mode) | `AWS/SageMaker` Invocation4XXErrors, 5-minute sum | ≥ 1 |
| the endpoint (`sagemaker` mode) | `AWS/SageMaker` ModelLatency, p99 over 5 minutes, 3 periods in a row | > 3 s |

The endpoint's only caller is the predict Lambda, which sends requests the API has validated: a 4XX
from the endpoint is a contract break between the two, not a client's mistake, so one is alarmed.

A signal that another stack already alarms on is not alarmed twice: the Serving stack's canary
alarms (the predict alias's Errors, the API's 5XXError) already page through the alerts topic and
roll deployments back, so they are reused (`reused`) and shown on the dashboard instead. An
existing alarm covers a signal when it watches the same metric of the same resource, compared as
CloudFormation would see them (namespace, metric name, and the resolved resource dimension).

Stage Lambdas raise on bad input by design (the exception's class name is the Step Functions error
name), so their Errors alarms also fire for rejected runs; the failed-executions alarm says which run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from cdk_app.constructs.sagemaker_endpoint import ServerlessEndpoint
from clinrisk.adapters.sagemaker_endpoint import VARIANT_NAME

PERIOD = Duration.minutes(5)
SERVER_ERRORS_THRESHOLD = 5
LATENCY_P99_MS = 3000
LATENCY_PERIODS = 3
# The dimension that names the resource a metric is about, per namespace.
RESOURCE_DIMENSION: Mapping[str, str] = {
    "AWS/Lambda": "FunctionName",
    "AWS/States": "StateMachineArn",
    "AWS/ApiGateway": "ApiName",
    "AWS/SageMaker": "EndpointName",
}


@dataclass(frozen=True)
class Watched:
    """What the alarms watch: labelled functions and state machines, the API (if the Serving stack
    exposes one), and the alarms the other stacks already have."""

    functions: Sequence[tuple[str, lambda_.IFunction]]
    state_machines: Sequence[tuple[str, sfn.IStateMachine]]
    api: apigw.RestApi | None
    existing: Sequence[cloudwatch.Alarm]
    endpoint: ServerlessEndpoint | None = None


@dataclass(frozen=True)
class Signal:
    """One alarm's worth: a metric of one resource and when it is bad."""

    id: str
    description: str
    metric: cloudwatch.Metric
    resource: IConstruct
    threshold: float
    comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    periods: int = 1


class MonitoringAlarms(Construct):
    """`alarms`: created here; `reused`: other stacks' alarms that already cover a signal."""

    alarms: list[cloudwatch.Alarm]
    reused: list[cloudwatch.Alarm]

    def __init__(self, scope: Construct, id: str, *, name: str, watched: Watched, topic: sns.ITopic) -> None:
        super().__init__(scope, id)
        self.alarms, self.reused = [], []
        for signal in signals(watched):
            covering = covering_alarm(signal, watched.existing)
            if covering is not None:
                if covering not in self.reused:
                    self.reused.append(covering)
                continue
            self.alarms.append(self._alarm(name, signal, topic))

    def _alarm(self, name: str, signal: Signal, topic: sns.ITopic) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            signal.id,
            alarm_name=f"{name}-{signal.id}",
            alarm_description=signal.description,
            metric=signal.metric,
            threshold=signal.threshold,
            evaluation_periods=signal.periods,
            comparison_operator=signal.comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(topic))
        alarm.add_ok_action(actions.SnsAction(topic))
        return alarm


# Alarms on counts, one per (id suffix, what it means, the construct's metric method): any count
# above zero in a period is worth an e-mail.
_FUNCTION_COUNTS = (
    ("errors", "the function raised errors (a crash, a bug, or a stage rejecting its input).", "metric_errors"),
    ("throttles", "invocations were throttled (reserved concurrency exhausted).", "metric_throttles"),
)
_STATE_MACHINE_COUNTS = (
    ("failed", "executions failed (each failure was also notified by the run itself).", "metric_failed"),
    ("timed-out", "executions hit the state machine's timeout.", "metric_timed_out"),
)


def _count_signals(label: str, resource: Any, counts: tuple[tuple[str, str, str], ...]) -> list[Signal]:
    return [
        Signal(
            id=f"{label}-{suffix}",
            description=f"{label}: {meaning}",
            metric=getattr(resource, method)(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            resource=resource,
            threshold=1,
        )
        for suffix, meaning, method in counts
    ]


def signals(watched: Watched) -> list[Signal]:
    found: list[Signal] = []
    for label, function in watched.functions:
        found += _count_signals(label, function, _FUNCTION_COUNTS)
    for label, machine in watched.state_machines:
        found += _count_signals(label, machine, _STATE_MACHINE_COUNTS)
    if watched.api is not None:
        found += _api_signals(watched.api)
    if watched.endpoint is not None:
        found += _endpoint_signals(watched.endpoint)
    return found


def _api_signals(api: apigw.RestApi) -> list[Signal]:
    return [
        Signal(
            id="api-5xx",
            description="The prediction API answered with 5xx errors.",
            metric=api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            resource=api,
            threshold=SERVER_ERRORS_THRESHOLD,
        ),
        Signal(
            id="api-latency-p99",
            description=f"The prediction API's p99 latency stayed above {LATENCY_P99_MS} ms for"
            f" {LATENCY_PERIODS} periods of {PERIOD.to_minutes()} minutes.",
            metric=api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.p(99)),
            resource=api,
            threshold=LATENCY_P99_MS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            periods=LATENCY_PERIODS,
        ),
    ]


def _endpoint_signals(endpoint: ServerlessEndpoint) -> list[Signal]:
    def metric(name: str, statistic: str) -> cloudwatch.Metric:
        dimensions = {"EndpointName": endpoint.endpoint_name, "VariantName": VARIANT_NAME}
        return cloudwatch.Metric(
            namespace="AWS/SageMaker", metric_name=name, dimensions_map=dimensions, period=PERIOD, statistic=statistic
        )

    failures = (
        ("5xx", "Invocation5XXErrors", "failed requests (the model container raised or could not start)"),
        ("4xx", "Invocation4XXErrors", "refused the predict Lambda's requests (a contract break between them)"),
    )
    return [
        *(
            Signal(
                id=f"endpoint-{kind}",
                description=f"The SageMaker endpoint {what}.",
                metric=metric(name, cloudwatch.Stats.SUM),
                resource=endpoint,
                threshold=1,
            )
            for kind, name, what in failures
        ),
        Signal(
            id="endpoint-model-latency-p99",
            description=f"The endpoint's p99 model latency stayed above {LATENCY_P99_MS} ms for {LATENCY_PERIODS}"
            f" periods of {PERIOD.to_minutes()} minutes.",
            metric=metric("ModelLatency", cloudwatch.Stats.p(99)),  # reported in microseconds
            resource=endpoint,
            threshold=LATENCY_P99_MS * 1000,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            periods=LATENCY_PERIODS,
        ),
    ]


def label_of(construct: IConstruct) -> str:
    """A construct's path as an alarm-name-friendly label: Pipeline/Functions/Validate → Pipeline-Functions-Validate."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", construct.node.path).strip("-")


# --------------------------------------------------------------------------- is a signal already alarmed?


def covering_alarm(signal: Signal, existing: Sequence[cloudwatch.Alarm]) -> cloudwatch.Alarm | None:
    """An existing alarm on the same metric of the same resource, or None."""
    metric = signal.metric
    wanted = _signature(Stack.of(signal.resource), metric.namespace, metric.metric_name, metric.dimensions or {})
    for alarm in existing:
        cfn = alarm.node.default_child
        if not isinstance(cfn, cloudwatch.CfnAlarm):
            continue
        stack = Stack.of(alarm)
        dimensions = {item["name"]: item["value"] for item in stack.resolve(cfn.dimensions) or []}
        found = _signature(stack, stack.resolve(cfn.namespace), stack.resolve(cfn.metric_name), dimensions)
        if found is not None and found == wanted:
            return alarm
    return None


def _signature(stack: Stack, namespace: Any, metric_name: Any, dimensions: Mapping[str, Any]) -> tuple[str, ...] | None:
    """(stack, namespace, metric, resource) with the resource as CloudFormation sees it in `stack`."""
    key = RESOURCE_DIMENSION.get(str(namespace))
    if key is None or key not in dimensions:
        return None
    resource = json.dumps(stack.resolve(dimensions[key]), sort_keys=True)
    return (stack.node.path, str(namespace), str(metric_name), resource)
