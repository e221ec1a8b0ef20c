"""One CloudWatch dashboard for the app: alarm states first, then the API, every state machine and
every Lambda, each with the metrics its alarms watch and the traffic that puts them in context."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.constructs.monitoring_alarms import Watched

PERIOD = Duration.minutes(5)
WIDGETS_PER_ROW = 3
WIDTH = 24 // WIDGETS_PER_ROW
HEIGHT = 6


class MonitoringDashboard(Construct):
    dashboard: cloudwatch.Dashboard

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        watched: Watched,
        alarms: Sequence[cloudwatch.IAlarm],
        extra_widgets: Sequence[cloudwatch.IWidget] = (),
    ) -> None:
        super().__init__(scope, id)
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=name)
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="clinrisk alarms", alarms=list(alarms), width=24, height=HEIGHT)
        )
        widgets = _api_widgets(watched.api) if watched.api is not None else []
        widgets += [_state_machine_widget(label, machine) for label, machine in watched.state_machines]
        widgets += [_function_widget(label, function) for label, function in watched.functions]
        widgets += list(extra_widgets)
        for start in range(0, len(widgets), WIDGETS_PER_ROW):
            self.dashboard.add_widgets(*widgets[start : start + WIDGETS_PER_ROW])


def _graph(
    title: str, left: list[cloudwatch.IMetric], right: list[cloudwatch.IMetric] | None = None
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=left, right=right or [], width=WIDTH, height=HEIGHT)


def _sums(*metrics: Callable[..., cloudwatch.Metric]) -> list[cloudwatch.IMetric]:
    """Each of `metrics` (a construct's metric_* method) summed over PERIOD."""
    return [metric(period=PERIOD, statistic=cloudwatch.Stats.SUM) for metric in metrics]


def _api_widgets(api: apigw.RestApi) -> list[cloudwatch.IWidget]:
    return [
        _graph(
            "Prediction API: requests and errors",
            _sums(api.metric_count),
            _sums(api.metric_server_error, api.metric_client_error),
        ),
        _graph(
            "Prediction API: latency",
            [api.metric_latency(period=PERIOD, statistic=stat) for stat in ("p50", "p99")],
        ),
    ]


def _state_machine_widget(label: str, machine: sfn.IStateMachine) -> cloudwatch.IWidget:
    return _graph(
        label,
        _sums(machine.metric_started, machine.metric_succeeded),
        _sums(machine.metric_failed, machine.metric_timed_out),
    )


def _function_widget(label: str, function: lambda_.IFunction) -> cloudwatch.IWidget:
    return _graph(
        label,
        _sums(function.metric_invocations, function.metric_errors, function.metric_throttles),
        [function.metric_duration(period=PERIOD, statistic="p99")],
    )
