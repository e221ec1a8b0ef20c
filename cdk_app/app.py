"""The CDK app entry point (`python -m cdk_app.app`, as cdk.json says).

Stacks are environment-agnostic (no account or region), so `cdk synth` needs no AWS credentials.
"""

from __future__ import annotations

import sys

from aws_cdk import App, Aspects, Tags

from cdk_app.compliance import add_nag_packs
from cdk_app.concurrency import ReservedConcurrency
from cdk_app.config import ClinriskConfig, ConfigError, config_from_node
from cdk_app.stacks.batch_scoring import BatchScoringStack
from cdk_app.stacks.explain import ExplainStack
from cdk_app.stacks.foundation import FoundationStack
from cdk_app.stacks.mlflow import MlflowStack
from cdk_app.stacks.monitoring import MonitoringStack
from cdk_app.stacks.pipeline import PipelineStack
from cdk_app.stacks.props import ClinriskProps
from cdk_app.stacks.serving import ServingStack


class ClinriskStacks:
    """The stacks of one environment, as typed attributes, so tests and later stacks can reach them."""

    def __init__(self, app: App, config: ClinriskConfig) -> None:
        self.foundation = FoundationStack(app, "Foundation", config=config)
        # What every later stack builds on, made once.
        self.props = props = ClinriskProps(config=config, foundation=self.foundation)
        self.mlflow = MlflowStack(app, "Mlflow", props=props)
        self.pipeline = PipelineStack(app, "Pipeline", props=props, mlflow=self.mlflow)
        self.explain = ExplainStack(app, "Explain", props=props, pipeline=self.pipeline)
        self.serving = ServingStack(app, "Serving", props=props, pipeline=self.pipeline, explain=self.explain)
        self.batch_scoring = BatchScoringStack(app, "BatchScoring", props=props)
        watched = [self.foundation, self.pipeline, self.serving, self.batch_scoring, self.explain]
        self.monitoring = MonitoringStack(
            app, "Monitoring", props=props, pipeline=self.pipeline, serving=self.serving, watched=watched
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
