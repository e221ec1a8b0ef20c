"""Alarms of the explanations, to the alerts topic: knowledge events that failed ingest (dead-letter
queue depth), the share of explanations answered degraded, and Bedrock throttling per model id.

The degraded share is metric math over the explain function's EMF metrics (`Explanations`,
`DegradedExplanations`, namespace `clinrisk`, dimension `service`; lambdas/explain/routes.py), so
an hour with few requests does not alarm on one slow answer: it alarms only when at least
`MIN_EXPLANATIONS` were asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.constructs.predict_service import METRICS_NAMESPACE
from lambdas.explain.api import SERVICE as EXPLAIN_SERVICE

PERIOD = Duration.minutes(15)
DEGRADED_SHARE = 0.25  # a quarter of explanations without the LLM's narrative, sources or similar patients
MIN_EXPLANATIONS = 20


def explain_metric(name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": EXPLAIN_SERVICE},
        period=PERIOD,
        statistic=cloudwatch.Stats.SUM,
    )


def degraded_share() -> cloudwatch.MathExpression:
    """Degraded / all, and 0 while fewer than MIN_EXPLANATIONS were asked for."""
    return cloudwatch.MathExpression(
        expression=f"IF(total >= {MIN_EXPLANATIONS}, degraded / total, 0)",
        using_metrics={"degraded": explain_metric("DegradedExplanations"), "total": explain_metric("Explanations")},
        label="Degraded explanations (share)",
        period=PERIOD,
    )


def throttles(model_id: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/Bedrock",
        metric_name="InvocationThrottles",
        dimensions_map={"ModelId": model_id},
        period=PERIOD,
        statistic=cloudwatch.Stats.SUM,
    )


class ExplainAlarms(Construct):
    alarms: list[cloudwatch.Alarm]
    widgets: list[cloudwatch.IWidget]

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        dead_letters: sqs.IQueue,
        model_ids: Sequence[str],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        dead_letter_depth = dead_letters.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
        )
        self.alarms = [
            self._alarm(
                "IngestDeadLetters",
                f"{name}-rag-ingest-dead-letters",
                "Knowledge events failed ingest repeatedly and wait in the dead-letter queue; the index misses"
                " or keeps stale passages until they are replayed.",
                dead_letter_depth,
                threshold=1,
            ),
            self._alarm(
                "DegradedExplanations",
                f"{name}-explain-degraded",
                f"Over {DEGRADED_SHARE:.0%} of explanations came back degraded (Bedrock throttled or timed out,"
                " the guardrail intervened, or the collection was unreachable).",
                degraded_share(),
                threshold=DEGRADED_SHARE,
            ),
            *(
                self._alarm(
                    f"Throttles{number}",
                    f"{name}-bedrock-throttles-{number}",
                    f"Bedrock throttled {model_id}; explanations degrade while it does.",
                    throttles(model_id),
                    threshold=1,
                )
                for number, model_id in enumerate(model_ids)
            ),
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(topic))
            alarm.add_ok_action(actions.SnsAction(topic))
        self.widgets = [
            cloudwatch.GraphWidget(
                title="Explanations", left=[explain_metric("Explanations")], right=[degraded_share()]
            ),
            cloudwatch.GraphWidget(title="Bedrock throttles", left=[throttles(model_id) for model_id in model_ids]),
            cloudwatch.GraphWidget(title="Knowledge ingest dead letters", left=[dead_letter_depth]),
        ]

    def _alarm(
        self, id: str, alarm_name: str, description: str, metric: cloudwatch.IMetric, *, threshold: float
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            id,
            alarm_name=alarm_name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
