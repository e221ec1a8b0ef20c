"""The CDK app entry point (`python -m cdk_app.app`, as cdk.json says).

Stacks are environment-agnostic (no account or region), so `cdk synth` needs no AWS credentials.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from aws_cdk import App, Aspects, Stack, Tags

from cdk_app.compliance import add_nag_packs
from cdk_app.concurrency import ReservedConcurrency
from cdk_app.config import ClinriskConfig, ConfigError, config_from_node
from cdk_app.stacks.batch_scoring import BatchScoringStack
from cdk_app.stacks.foundation import FoundationStack
from cdk_app.stacks.mlflow import MlflowStack
from cdk_app.stacks.monitoring import MonitoringStack
from cdk_app.stacks.pipeline import PipelineStack
from cdk_app.stacks.serving import ServingStack

StackT = TypeVar("StackT", bound=Stack)


class ClinriskStacks:
    """The stacks of one environment, as typed attributes, so tests and later stacks can reach them."""

    def __init__(self, app: App, config: ClinriskConfig) -> None:
        self._app, self._config = app, config
        self.foundation = self._stack(FoundationStack, "Foundation", "KMS keys, S3 buckets and SNS topics")
        self.mlflow = self._stack(
            MlflowStack, "Mlflow", "the MLflow tracking server and its IAM", foundation=self.foundation
        )
        self.pipeline = self._stack(
            PipelineStack,
            "Pipeline",
            "the retraining state machine, its Lambdas, triggers and approvals",
            foundation=self.foundation,
            mlflow=self.mlflow,
        )
        self.serving = self._stack(
            ServingStack,
            "Serving",
            "the prediction API (API Gateway, Cognito, WAF, Lambda)",
            foundation=self.foundation,
            pipeline=self.pipeline,
        )
        self.batch_scoring = self._stack(
            BatchScoringStack, "BatchScoring", "batch scoring of a CSV in S3", foundation=self.foundation
        )
        self.monitoring = self._stack(
            MonitoringStack,
            "Monitoring",
            "alarms and a dashboard, alarming to the alerts topic",
            foundation=self.foundation,
            pipeline=self.pipeline,
            serving=self.serving,
            batch_scoring=self.batch_scoring,
        )

    def _stack(self, kind: Callable[..., StackT], id: str, description: str, **dependencies: Any) -> StackT:
        """`clinrisk-<env>-<id in kebab case>`, with the app's config and the stacks it builds on."""
        name = re.sub(r"(?<!^)(?=[A-Z])", "-", id).lower()
        return kind(
            self._app,
            id,
            stack_name=f"clinrisk-{self._config.env}-{name}",
            config=self._config,
            description=f"clinrisk: {description}",
            **dependencies,
        )


def build(app: App) -> ClinriskStacks:
    """Add clinrisk's stacks and compliance checks to `app`; raises ConfigError for bad context."""
    config = config_from_node(app.node)
    check_network(config)
    stacks = ClinriskStacks(app, config)
    Aspects.of(app).add(ReservedConcurrency(config.reserved_concurrency))
    Tags.of(app).add("project", "clinrisk")
    Tags.of(app).add("environment", config.env)
    add_nag_packs(app)
    return stacks


def check_network(config: ClinriskConfig) -> None:
    """The VPC variant reaches MLflow through the tracking server's PrivateLink service; an MLflow app's API
    (mlflow.sagemaker.<region>.app.aws) has no documented VPC endpoint, so isolated functions could not reach it."""
    if config.vpc and config.mlflow_flavour == "serverless-app":
        raise ConfigError(
            "invalid cdk.json context: vpc: true needs mlflowFlavour managed-tracking-server; a serverless MLflow"
            " app has no VPC endpoint, so functions in the isolated subnets could not reach it"
        )


def main() -> None:
    app = App()
    try:
        build(app)
    except ConfigError as error:
        print(f"clinrisk: {error}", file=sys.stderr)  # noqa: T201 - the CDK CLI shows the app's stderr
        sys.exit(2)
    app.synth()


if __name__ == "__main__":
    main()
