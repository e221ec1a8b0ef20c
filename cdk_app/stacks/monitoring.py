"""MonitoringStack: alarms and one dashboard for every piece of the app, all alarming to the alerts topic.

What is watched is found, not listed: every clinrisk Lambda (`PythonFunction`) and every state
machine in the other stacks, and the Serving stack's REST API. So a function or state machine
added later is alarmed without a change here. Alarms another stack already has for a signal (the
Serving stack's canary alarms) are reused, not duplicated; see `MonitoringAlarms`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.constructs.alarm_notices import AlarmNotices
from cdk_app.constructs.explain_alarms import ExplainAlarms
from cdk_app.constructs.image_functions import ImageFunctions
from cdk_app.constructs.model_alarms import ModelAlarms, task_rules
from cdk_app.constructs.model_dashboard import model_widgets
from cdk_app.constructs.monitor_schedule import MonitorSchedule
from cdk_app.constructs.monitoring_alarms import MonitoringAlarms, Watched, label_of
from cdk_app.constructs.monitoring_dashboard import MonitoringDashboard
from cdk_app.constructs.outcome_intake import OutcomeIntake
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.constructs.retraining_triggers import drift_alarm_name
from cdk_app.constructs.sagemaker_endpoint import ServerlessEndpoint
from cdk_app.monitoring_image import stage_context
from cdk_app.stacks.pipeline import PipelineStack
from cdk_app.stacks.props import ClinriskProps
from cdk_app.stacks.serving import ServingStack
from clinrisk.monitoring.notices import WatchedMetric
from clinrisk.settings import MonitoringRules


class MonitoringStack(Stack):
    monitor: MonitorSchedule
    outcomes: OutcomeIntake
    model_alarms: ModelAlarms
    notices: AlarmNotices
    watched: Watched
    alarms: MonitoringAlarms
    explain_alarms: ExplainAlarms
    dashboard: cloudwatch.Dashboard

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        props: ClinriskProps,
        pipeline: PipelineStack,
        serving: ServingStack,
        watched: Sequence[Stack],
    ) -> None:
        super().__init__(scope, id, **props.naming(id, "alarms and a dashboard, alarming to the alerts topic"))
        config, foundation, name = props.config, props.foundation, props.name
        keys, buckets = foundation.keys, foundation.buckets
        functions = ImageFunctions(
            image=stage_context(), data_key=keys.data, log_key=keys.messaging, network=foundation.network
        )
        self.monitor = MonitorSchedule(
            self, "Monitor", functions=functions, schedule=config.monitor_schedule, env_name=config.env,
            capture=foundation.capture, artifacts_bucket=buckets.artifacts,
        )  # fmt: skip
        self.outcomes = OutcomeIntake(
            self, "Outcomes", name=name, functions=functions, data_bucket=buckets.data, capture=foundation.capture,
            artifacts_bucket=buckets.artifacts, alerts=foundation.topics.alerts,
        )  # fmt: skip
        # The library's defaults (the thresholds the local alarms use too), with each task file's overrides.
        rules = task_rules(config.task_schedules(), MonitoringRules(), config.gate)
        self.model_alarms = ModelAlarms(self, "ModelAlarms", name=name, rules=rules)
        drift_alarms = [
            (drift_alarm_name(config.env, task), triggers.drift_alarm, _drift(task))
            for task, triggers in pipeline.triggers.by_task.items()
        ]
        self.notices = AlarmNotices(
            self, "AlarmNotices", functions=functions, alarms=[*self.model_alarms.alarms, *drift_alarms],
            topic=foundation.topics.alerts, topic_key=keys.messaging,
        )  # fmt: skip
        self.watched = watched_resources([*watched, self], api=_api(serving))
        self.alarms = MonitoringAlarms(self, "Alarms", name=name, watched=self.watched, topic=foundation.topics.alerts)
        self.explain_alarms = ExplainAlarms(
            self,
            "ExplainAlarms",
            name=name,
            dead_letters=foundation.knowledge_events.dead_letters,
            model_ids=[config.bedrock.text_model_id, config.bedrock.embedding_model_id],
            topic=foundation.topics.alerts,
        )
        shown = [*self.alarms.alarms, *self.explain_alarms.alarms, *self.watched.existing]
        widgets = [*self.explain_alarms.widgets, *model_widgets(rules)]
        self.dashboard = MonitoringDashboard(
            self, "Dashboard", name=name, watched=self.watched, alarms=shown, extra_widgets=widgets
        ).dashboard


def _drift(task: str) -> WatchedMetric:
    # What a task's retraining alarm watches (cdk_app/constructs/retraining_triggers.py), for its notice.
    return WatchedMetric(task=task, metric="FeatureDrift", worst="MAX")


def _api(serving: ServingStack) -> apigw.RestApi | None:
    # The Serving stack exposes its REST API as `api`; tolerate a Serving stack without one.
    api = getattr(serving, "api", None)
    return api if isinstance(api, apigw.RestApi) else None


def watched_resources(stacks: Sequence[Stack], *, api: apigw.RestApi | None) -> Watched:
    """Every clinrisk function, state machine and alarm in `stacks`, in construct-tree order."""
    nodes = [node for stack in stacks for node in stack.node.find_all()]
    return Watched(
        functions=[(label_of(n), n.function) for n in nodes if isinstance(n, PythonFunction)],
        state_machines=[(label_of(n), n) for n in nodes if isinstance(n, sfn.StateMachine)],
        api=api,
        existing=[n for n in nodes if isinstance(n, cloudwatch.Alarm)],
        endpoint=next((n for n in nodes if isinstance(n, ServerlessEndpoint)), None),
    )
