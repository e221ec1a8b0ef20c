"""The dashboard's model section, per task: every version's predictions, its high-risk rate, the most
drifted input fields, estimated (label-free) and realized AUC over time, the subgroup gaps and the
share of refused (422) requests. Versions and fields are found by search expressions and Metrics
Insights queries, so a new version or field shows without a change here."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from clinrisk.settings import GateRules, MonitoringRules

PERIOD = Duration.hours(1)
WIDTH, HEIGHT = 8, 6
NAMESPACE = "clinrisk"
TOP_FIELDS = 5


def _search(metric: str, task: str | None, statistic: str, dimensions: str = "model_version,task") -> str:
    where = f' task="{task}"' if task else ""
    seconds = int(PERIOD.to_seconds())
    return f"SEARCH('{{{NAMESPACE},{dimensions}}} MetricName=\"{metric}\"{where}', '{statistic}', {seconds})"


def _by_version(metric: str, task: str, statistic: str = "Maximum") -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(expression=_search(metric, task, statistic), period=PERIOD, label=metric,
                                     using_metrics={})  # fmt: skip


def _graph(title: str, left: list[cloudwatch.IMetric], *, limit: float | None = None) -> cloudwatch.GraphWidget:
    annotations = [cloudwatch.HorizontalAnnotation(value=limit, label="alarm")] if limit is not None else []
    return cloudwatch.GraphWidget(
        title=title, left=left, left_annotations=annotations, width=WIDTH, height=HEIGHT, period=PERIOD
    )


def model_widgets(rules: Mapping[str, tuple[MonitoringRules, GateRules]]) -> list[cloudwatch.IWidget]:
    """Each task's section, its limits drawn at the task's own alarm levels (`model_alarms.task_rules`)."""
    widgets: list[cloudwatch.IWidget] = []
    for task, (monitoring, gate) in rules.items():
        top_fields = cloudwatch.MathExpression(
            expression=f'SELECT MAX(FieldPSI) FROM SCHEMA("{NAMESPACE}", field, model_version, task)'
            f" WHERE task = '{task}' GROUP BY field ORDER BY MAX() DESC LIMIT {TOP_FIELDS}",
            period=PERIOD,
            label="field PSI",
            using_metrics={},
        )
        predictions = cloudwatch.MathExpression(
            # The predict function's metrics (Powertools: service and model_version dimensions).
            expression=_search("Predictions", None, "Sum", dimensions="model_version,service"),
            period=PERIOD,
            label="predictions",
            using_metrics={},
        )
        widgets += [
            cloudwatch.TextWidget(markdown=f"## Model: {task}", width=24, height=1),
            _graph(f"{task}: predictions by version", [predictions]),
            _graph(
                f"{task}: high-risk rate", [_by_version("HighRiskRate", task)], limit=monitoring.high_risk_rate_alarm
            ),
            _graph(f"{task}: top {TOP_FIELDS} drifted fields (PSI)", [top_fields], limit=monitoring.psi_threshold),
            _graph(
                f"{task}: estimated and realized AUC",
                [_by_version("EstimatedAUC", task), _by_version("RealizedAUC", task, "Minimum")],
                limit=gate.auc_floor,
            ),
            _graph(
                f"{task}: subgroup gaps (AUC, high-risk rate)",
                [
                    cloudwatch.MathExpression(
                        expression=f'SEARCH(\'{{{NAMESPACE},model_version,task}} task="{task}" '
                        f"(MetricName=SubgroupAUCGap_* OR MetricName=SubgroupHighRiskGap_*)', 'Maximum',"
                        f" {int(PERIOD.to_seconds())})",
                        period=PERIOD,
                        label="gap",
                        using_metrics={},
                    )
                ],
                limit=gate.max_subgroup_auc_gap,
            ),
            _graph(
                f"{task}: refused requests (422 share)",
                [_by_version("RefusedShare", task)],
                limit=monitoring.refused_share_alarm,
            ),
        ]
    return widgets
