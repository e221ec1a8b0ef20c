"""MlflowStack: the SageMaker-managed MLflow (tracking server or serverless MLflow app) and the IAM scoped to it.

Other stacks reach MLflow only through `tracking_server_arn` (the MLflow tracking URI: the
`sagemaker-mlflow` plugin takes the ARN) and `grant_mlflow_access`, which adds explicit statements
for the flavour deployed (see cdk_app/constructs/mlflow_server.py).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_app.constructs.mlflow_server import MlflowServer
from cdk_app.stacks.props import ClinriskProps


class MlflowStack(Stack):
    server: MlflowServer

    def __init__(self, scope: Construct, id: str, *, props: ClinriskProps) -> None:
        super().__init__(scope, id, **props.naming(id, "the MLflow tracking server and its IAM"))
        config, foundation = props.config, props.foundation
        self.server = MlflowServer(
            self,
            "Mlflow",
            flavour=config.mlflow_flavour,
            name=f"clinrisk-{config.env}",
            artifacts=foundation.buckets.artifacts,
            key=foundation.keys.data,
        )

    @property
    def tracking_server_arn(self) -> str:
        """The tracking server's (or MLflow app's) ARN: what MLFLOW_TRACKING_URI is set to."""
        return self.server.arn

    def grant_mlflow_access(
        self, principal: iam.IGrantable, *, registry_only: bool = False, log_artifacts: bool = False
    ) -> None:
        """Explicit MLflow permissions for `principal`; see `MlflowServer.grant_access`."""
        self.server.grant_access(principal, registry_only=registry_only, log_artifacts=log_artifacts)
