"""The CDK app entry point (`python -m cdk_app.app`, as cdk.json says).

Stacks are environment-agnostic (no account or region), so `cdk synth` needs no AWS credentials.
"""

from __future__ import annotations

import sys

from aws_cdk import App, Tags

from cdk_app.compliance import add_nag_packs
from cdk_app.config import ClinriskConfig, ConfigError, config_from_node
from cdk_app.stacks.foundation import FoundationStack


class ClinriskStacks:
    """The stacks of one environment, as typed attributes, so tests and later stacks can reach them."""

    def __init__(self, app: App, config: ClinriskConfig) -> None:
        prefix = f"clinrisk-{config.env}"
        self.foundation = FoundationStack(
            app,
            "Foundation",
            stack_name=f"{prefix}-foundation",
            config=config,
            description="clinrisk: KMS keys, S3 buckets and SNS topics",
        )


def build(app: App) -> ClinriskStacks:
    """Add clinrisk's stacks and compliance checks to `app`; raises ConfigError for bad context."""
    config = config_from_node(app.node)
    stacks = ClinriskStacks(app, config)
    Tags.of(app).add("project", "clinrisk")
    Tags.of(app).add("environment", config.env)
    add_nag_packs(app)
    return stacks


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
