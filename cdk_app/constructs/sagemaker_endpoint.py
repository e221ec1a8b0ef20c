"""The SageMaker serverless endpoint of the `sagemaker` serving mode: what it runs as, and who may
deploy to it and call it.

The endpoint itself (its SageMaker model, endpoint configuration and endpoint) is created by
promotion, not by CloudFormation: a model refers to one version's archive for life, and there is
no version to serve before the first promotion. Each champion change deploys
`serving/sagemaker/v<version>-<checksum>/model.tar.gz` as the model `<endpoint>-v<version>-<checksum>`
and creates or updates the endpoint (`clinrisk.adapters.sagemaker_endpoint`). The model runs
`inference.py` from the training source tarball in the SageMaker XGBoost framework inference
image of the version that trains it.

What serverless endpoints cannot do, by design of the service, and so what this endpoint lacks:
no VPC configuration and no network isolation, no data capture (Model Monitor), no GPUs, one
production variant. Its configuration takes the data key, and its logs go to a log group created
here, encrypted and kept for a year, instead of one SageMaker would create unencrypted and keep
forever. Deleting the stack leaves the endpoint and its log group: remove the endpoint with
`aws sagemaker delete-endpoint`. The endpoint's name ends with the stack's deployment suffix
(cdk_app.naming), so a deployment after a destroy makes a new one and never meets the old.

One endpoint per task (docs/deployment.md, "The sagemaker serving mode with several tasks"):
serverless endpoints cannot host multi-model endpoints, and an endpoint of its own lets each
task's promotion and rollback update that task's endpoint and nothing else, while an idle
serverless endpoint costs nothing. readmission's endpoint keeps the name and log group it had
before tasks (`clinrisk-<env>-predict-<suffix>`); another task's is `clinrisk-<env>-<task>-<suffix>`.
The endpoints share one execution role: they run the same image and source, and read archives
under the same prefix. `environment` tells the deployer and the caller each task's endpoint
(`clinrisk.settings.SageMakerServing.endpoint_names`; `endpoint_name` is the default task's).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct
from pydantic import ValidationError

from cdk_app.config import DEFAULT_TASK, ConfigError
from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from cdk_app.environment import settings_environment
from cdk_app.images import xgboost_image_uri
from cdk_app.naming import deployment_suffix
from cdk_app.permissions import allow_read_objects, allow_write_objects
from clinrisk.serving.endpoint_archive import ARCHIVE_PREFIX
from clinrisk.settings import SageMakerServing, Settings

MODEL_DIRECTORIES = "runs/*/model/"  # what promotion packs into an archive (clinrisk.serving.endpoint_deployment)
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")
DEPLOY_ACTIONS = ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint")
LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"  # where SageMaker writes an endpoint's logs, by endpoint name


class EndpointNameError(ConfigError):
    """A task's endpoint name would not fit SageMaker's limits (the task or environment name is too long)."""


class ServerlessEndpoint(Construct):
    """`endpoint_names` and `endpoint_arns` name each task's endpoint (`endpoint_name` and
    `endpoint_arn` the default task's); `environment` is what its deployer and its caller are told
    (`clinrisk.settings.SageMakerServing`)."""

    role: iam.Role
    endpoint_name: str
    endpoint_arn: str
    endpoint_names: dict[str, str]
    endpoint_arns: dict[str, str]
    log_group: logs.LogGroup
    log_groups: dict[str, logs.LogGroup]
    environment: dict[str, str]
    invoke_environment: dict[str, str]

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        tasks: Sequence[str] = (DEFAULT_TASK,),
        artifacts_bucket: s3.IBucket,
        data_key: kms.IKey,
        log_key: kms.IKey,
        source: s3_assets.Asset,
    ) -> None:
        super().__init__(scope, id)
        if not tasks:
            raise ValueError("the sagemaker serving mode needs at least one task")
        self._artifacts, self._data_key = artifacts_bucket, data_key
        self.log_groups = {task: self._log_group(task, env_name=env_name, log_key=log_key) for task in tasks}
        # The name read back from the log group (a reference other stacks import), not from the stack id:
        # AWS::StackId in another stack's template would be that stack's own id.
        self.endpoint_names = {
            task: Fn.select(LOG_GROUP_PREFIX.count("/"), Fn.split("/", group.log_group_name))
            for task, group in self.log_groups.items()
        }
        self.endpoint_arns = {task: self._arn("endpoint", name) for task, name in self.endpoint_names.items()}
        default = DEFAULT_TASK if DEFAULT_TASK in self.log_groups else tasks[0]
        self.log_group = self.log_groups[default]
        self.endpoint_name, self.endpoint_arn = self.endpoint_names[default], self.endpoint_arns[default]
        self.role = self._execution_role(source)
        settings = SageMakerServing(endpoint_name=f"clinrisk-{env_name}-predict-{'0' * 8}")
        # What the caller (the predict function) needs: each task's endpoint.
        self.invoke_environment = settings_environment(
            Settings,
            sagemaker__endpoint_name=self.endpoint_name,
            sagemaker__endpoint_names=Stack.of(self).to_json_string(self.endpoint_names),
        )
        self.environment = self.invoke_environment | settings_environment(
            Settings,
            sagemaker__execution_role_arn=self.role.role_arn,
            sagemaker__image_uri=xgboost_image_uri(self, image_scope="inference"),
            sagemaker__source_uri=source.s3_object_url,
            sagemaker__kms_key_arn=data_key.key_arn,
            sagemaker__memory_mb=str(settings.memory_mb),
            sagemaker__max_concurrency=str(settings.max_concurrency),
        )

    def _log_group(self, task: str, *, env_name: str, log_key: kms.IKey) -> logs.LogGroup:
        """SageMaker writes an endpoint's logs to /aws/sagemaker/Endpoints/<endpoint name>, and that group
        is kept when the stack goes: the name ends with the stack's deployment suffix, so the next
        deployment after a destroy gets a new endpoint and log group beside the old ones. readmission's
        keeps its construct id and name from before tasks, so an existing deployment keeps its endpoint."""
        own = task == DEFAULT_TASK
        base_name = f"clinrisk-{env_name}-predict" if own else f"clinrisk-{env_name}-{task}"
        try:
            SageMakerServing(endpoint_name=f"{base_name}-{'0' * 8}")  # the name's shape, checked at synth
        except ValidationError:
            raise EndpointNameError(
                f"invalid cdk.json context: tasks: task {task!r} would name its SageMaker endpoint"
                f" {base_name}-<8 characters>, longer than 41 characters: shorten the task or environment"
                " name, or use servingMode=lambda"
            ) from None
        return logs.LogGroup(
            self,
            "Logs" if own else f"Logs-{task}",
            log_group_name=f"{LOG_GROUP_PREFIX}{base_name}-{deployment_suffix(self)}",
            retention=LOG_RETENTION,
            encryption_key=log_key,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _arn(self, resource: str, name: str) -> str:
        return Stack.of(self).format_arn(service="sagemaker", resource=resource, resource_name=name)

    def _execution_role(self, source: s3_assets.Asset) -> iam.Role:
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="clinrisk endpoint model: read its archive and source, pull the image, write its logs",
        )
        # The framework images live in SageMaker's own accounts, one per region.
        image_repository = stack.format_arn(
            service="ecr", account="*", resource="repository", resource_name="sagemaker-xgboost"
        )
        policy = iam.ManagedPolicy(
            self,
            "ExecutionPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[
                        self._artifacts.arn_for_objects(f"{ARCHIVE_PREFIX}*"),
                        source.bucket.arn_for_objects(source.s3_object_key),
                    ],
                ),
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self._data_key.key_arn]),
                iam.PolicyStatement(actions=list(ECR_PULL_ACTIONS), resources=[image_repository]),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(
                    actions=list(LOG_ACTIONS), resources=[group.log_group_arn for group in self.log_groups.values()]
                ),
            ],
        )
        acknowledge_wildcard_resources(
            policy,
            "The endpoint reads the archive of whichever version is deployed, serving/sagemaker/v<version>-<checksum>/,"
            " known only at promotion; ecr:GetAuthorizationToken has no resource-level permissions; the XGBoost"
            " image repository belongs to SageMaker's account for the region, unknown at synth time; log streams"
            " are named by SageMaker.",
        )
        return role

    def allow_deploy(self, grantee: iam.IGrantable) -> None:
        """Promotion: pack a champion's model directory into its archive and point the endpoint at it."""
        versions = [f"{name}-v*" for name in self.endpoint_names.values()]
        config_arns = [self._arn("endpoint-config", name) for name in versions]
        endpoints = list(self.endpoint_arns.values())
        statements = [
            iam.PolicyStatement(actions=["sagemaker:CreateModel"], resources=[self._arn("model", n) for n in versions]),
            iam.PolicyStatement(actions=["sagemaker:CreateEndpointConfig"], resources=config_arns),
            iam.PolicyStatement(actions=["sagemaker:DescribeEndpoint"], resources=endpoints),
            # Creating or updating an endpoint is authorised on the endpoint and on the configuration.
            iam.PolicyStatement(actions=list(DEPLOY_ACTIONS), resources=[*endpoints, *config_arns]),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            # The endpoint configuration's KmsKeyId: SageMaker creates a grant for the storage it encrypts.
            iam.PolicyStatement(actions=["kms:DescribeKey"], resources=[self._data_key.key_arn]),
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[self._data_key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
        ]
        for statement in statements:
            grantee.grant_principal.add_to_principal_policy(statement)
        allow_read_objects(grantee, self._artifacts, key=self._data_key, prefixes=(MODEL_DIRECTORIES, ARCHIVE_PREFIX))
        allow_write_objects(grantee, self._artifacts, key=self._data_key, prefixes=(ARCHIVE_PREFIX,))

    def allow_invoke(self, grantee: iam.IGrantable) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=list(self.endpoint_arns.values()))
        )
