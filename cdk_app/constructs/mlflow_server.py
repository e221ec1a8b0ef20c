"""The SageMaker-managed MLflow the pipeline tracks runs and registers models in.

Two flavours (context `mlflowFlavour`):
- "managed-tracking-server": `AWS::SageMaker::MlflowTrackingServer`, a sized server whose data plane
  is authorised action by action under the `sagemaker-mlflow` IAM prefix, so each client gets the
  calls it makes and no more (the registry client cannot, say, delete an experiment);
- "serverless-app": `AWS::SageMaker::MlflowApp`, no server to size or pay for when idle, whose whole
  REST API is authorised by the one action `sagemaker:CallMlflowAppApi` (granting only
  `sagemaker-mlflow:*` gets 403 on every call), so reading implies writing there.

Either way the MLflow tracking URI is the resource's ARN (the `sagemaker-mlflow` plugin signs each
call with SigV4), artifacts live in the artifacts bucket under `mlflow/` (clients write them to S3
directly, the server only reads them), automatic registration in the SageMaker model registry is off
(clinrisk keeps its own aliases and serving pointer), and maintenance runs in a weekly window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from cdk_app.constructs.role_findings import acknowledge_role_findings
from cdk_app.permissions import allow_read_objects, allow_write_objects

MlflowFlavour = Literal["managed-tracking-server", "serverless-app"]

ARTIFACT_PREFIX = "mlflow/"
# Sunday night UTC, away from the Monday 03:00 retraining schedule and from office hours.
MAINTENANCE_WINDOW = "Sun:01:00"
TRACKING_SERVER_SIZE = "Small"  # one pipeline and a few people: the smallest size is enough
# The tracking server's MLflow, pinned so that SageMaker's default cannot move under the clients: the
# Lambda locks pin mlflow-skinny to the same minor, as the SageMaker guide asks ("Integrate MLflow with
# your environment": tracking server 3.0.x, client mlflow 3.0). tests/unit/test_mlflow_versions.py.
MLFLOW_VERSION = "3.0"

# What the clinrisk MLflow clients call (clinrisk.registry.tracking and .model_registry, the sagemaker-mlflow
# plugin), as named in the Service Authorization Reference for the `sagemaker-mlflow` prefix.
# Explicit on purpose: no delete, rename or restore of experiments, runs or registered models.
TRACKING_ACTIONS: tuple[str, ...] = (
    # experiments and runs (clinrisk.registry.tracking.record_candidate)
    "sagemaker-mlflow:GetExperiment",
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:SearchExperiments",
    "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:UpdateRun",
    "sagemaker-mlflow:SearchRuns",
    "sagemaker-mlflow:LogParam",
    "sagemaker-mlflow:LogMetric",
    "sagemaker-mlflow:LogBatch",
    "sagemaker-mlflow:LogInputs",
    "sagemaker-mlflow:LogOutputs",
    "sagemaker-mlflow:SetTag",
    "sagemaker-mlflow:GetMetricHistory",
    "sagemaker-mlflow:ListArtifacts",
    # MLflow 3 logged models (mlflow.pyfunc.log_model)
    "sagemaker-mlflow:LogModel",
    "sagemaker-mlflow:FinalizeLoggedModel",
    "sagemaker-mlflow:GetLoggedModel",
    "sagemaker-mlflow:SearchLoggedModels",
    "sagemaker-mlflow:SetLoggedModelTags",
    "sagemaker-mlflow:LogLoggedModelParams",
    "sagemaker-mlflow:ListLoggedModelArtifacts",
)
REGISTRY_ACTIONS: tuple[str, ...] = (
    # the model registry: versions, tags, aliases (clinrisk.registry.model_registry); promotion copies the
    # version's run metrics into the serving pointer, hence GetRun
    "sagemaker-mlflow:GetRun",
    "sagemaker-mlflow:CreateRegisteredModel",
    "sagemaker-mlflow:GetRegisteredModel",
    "sagemaker-mlflow:SearchRegisteredModels",
    "sagemaker-mlflow:SetRegisteredModelTag",
    "sagemaker-mlflow:CreateModelVersion",
    "sagemaker-mlflow:GetModelVersion",
    "sagemaker-mlflow:UpdateModelVersion",
    "sagemaker-mlflow:SearchModelVersions",
    "sagemaker-mlflow:GetLatestModelVersions",
    "sagemaker-mlflow:SetModelVersionTag",
    "sagemaker-mlflow:DeleteModelVersionTag",
    "sagemaker-mlflow:GetDownloadURIForModelVersionArtifacts",
    "sagemaker-mlflow:SetRegisteredModelAlias",
    "sagemaker-mlflow:DeleteRegisteredModelAlias",
    "sagemaker-mlflow:GetModelVersionByAlias",
)
# An app signs every data-plane call for the `sagemaker` service: this one action covers its REST API.
APP_ACTIONS = ("sagemaker:CallMlflowAppApi",)
# Not granted: the plugin (sagemaker-mlflow 0.5) builds the endpoint URL from the ARN itself, so
# clients need no DescribeMlflowTrackingServer/DescribeMlflowApp, and CreatePresigned*Url is a
# login link to the MLflow UI, which is for people, not for pipeline functions.


class _Common(TypedDict):
    artifact_store_uri: str
    role_arn: str
    weekly_maintenance_window_start: str


class MlflowServer(Construct):
    """`arn` is the MLflow tracking URI; `grant_access` is the only way clients get to use it."""

    arn: str
    flavour: MlflowFlavour
    role: iam.Role

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        flavour: MlflowFlavour,
        name: str,
        artifacts: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        self.flavour = flavour
        self._artifacts = artifacts
        self._key = key
        self.role = self._service_role()
        # What both flavours are given alike.
        common = _Common(
            artifact_store_uri=f"s3://{artifacts.bucket_name}/{ARTIFACT_PREFIX}",
            role_arn=self.role.role_arn,
            weekly_maintenance_window_start=MAINTENANCE_WINDOW,
        )
        resource: sagemaker.CfnMlflowTrackingServer | sagemaker.CfnMlflowApp
        if flavour == "managed-tracking-server":
            resource = sagemaker.CfnMlflowTrackingServer(
                self,
                "TrackingServer",
                tracking_server_name=name,
                tracking_server_size=TRACKING_SERVER_SIZE,
                mlflow_version=MLFLOW_VERSION,
                automatic_model_registration=False,
                **common,
            )
            self.arn = resource.attr_tracking_server_arn
        else:
            resource = sagemaker.CfnMlflowApp(
                self, "App", name=name, model_registration_mode="AutoModelRegistrationDisabled", **common
            )
            self.arn = resource.attr_arn
        # The role's policy must exist before SageMaker checks that it reaches the artifact store.
        resource.node.add_dependency(self.role.node.find_child("DefaultPolicy"))

    def _service_role(self) -> iam.Role:
        """What SageMaker itself does as the server: read and write artifacts under `mlflow/`."""
        role = iam.Role(
            self,
            "ServiceRole",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
            description="clinrisk MLflow: the artifact store under mlflow/ in the artifacts bucket",
        )
        allow_read_objects(role, self._artifacts, key=self._key, prefixes=(ARTIFACT_PREFIX,))
        allow_write_objects(role, self._artifacts, key=self._key, prefixes=(ARTIFACT_PREFIX,))
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetBucketLocation"], resources=[self._artifacts.bucket_arn])
        )
        acknowledge_role_findings(
            role,
            wildcard_reason="MLflow names artifact objects by the experiment and run ids it generates, so the"
            " artifact store can only be granted as the object prefix mlflow/* of the artifacts bucket.",
        )
        return role

    def grant_access(
        self, principal: iam.IGrantable, *, registry_only: bool = False, log_artifacts: bool = False
    ) -> None:
        """Let `principal` use this MLflow: tracking and registry calls (only the registry's with
        `registry_only`, on the tracking server), and with `log_artifacts` reading and writing
        artifacts under `mlflow/`, which MLflow clients put in S3 themselves."""
        if self.flavour == "managed-tracking-server":
            actions: Sequence[str] = REGISTRY_ACTIONS if registry_only else (*TRACKING_ACTIONS, *REGISTRY_ACTIONS)
        else:
            actions = list(APP_ACTIONS)
        principal.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=[self.arn])
        )
        if log_artifacts:
            allow_read_objects(principal, self._artifacts, key=self._key, prefixes=(ARTIFACT_PREFIX,))
            allow_write_objects(principal, self._artifacts, key=self._key, prefixes=(ARTIFACT_PREFIX,))
