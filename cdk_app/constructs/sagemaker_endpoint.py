"""The optional SageMaker serverless endpoint of the `sagemaker` serving mode.

The model runs in the SageMaker XGBoost framework inference container (the image of the same
framework version that trains it), from a model archive at a fixed key of the artifacts bucket,
`serving/sagemaker/model.tar.gz`. The endpoint is created from that archive: promotion has to
publish the champion's archive there, and a new champion needs a new endpoint configuration.

What serverless endpoints cannot do, by design of the service, and so what this endpoint lacks:
no VPC configuration and no network isolation, no data capture (Model Monitor), no GPUs, one
production variant only. Its endpoint configuration does take a KMS key (SageMaker encrypts the
container image copy with it), and its logs go to a log group created here, encrypted and kept
for a year, instead of one SageMaker would create unencrypted and keep forever.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from cdk_app.images import xgboost_image_uri

MODEL_ARCHIVE_KEY = "serving/sagemaker/model.tar.gz"
VARIANT_NAME = "AllTraffic"
# Serverless memory sizes are 1024..6144 MB in 1 GB steps; the XGBoost container needs little.
MEMORY_MB = 2048
MAX_CONCURRENCY = 10
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")


class ServerlessEndpoint(Construct):
    """`endpoint_name` and `endpoint_arn` are what the predict function is given."""

    role: iam.Role
    endpoint: sagemaker.CfnEndpoint
    endpoint_name: str
    endpoint_arn: str
    log_group: logs.LogGroup

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        artifacts_bucket: s3.IBucket,
        data_key: kms.IKey,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.endpoint_name = f"clinrisk-{env_name}-predict"
        self.endpoint_arn = stack.format_arn(service="sagemaker", resource="endpoint", resource_name=self.endpoint_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            retention=LOG_RETENTION,
            encryption_key=log_key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role, policy = self._execution_role(artifacts_bucket, data_key)
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=xgboost_image_uri(self, image_scope="inference"),
                model_data_url=f"s3://{artifacts_bucket.bucket_name}/{MODEL_ARCHIVE_KEY}",
            ),
        )
        model.node.add_dependency(policy)  # SageMaker checks the role's access when the model is created
        config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            kms_key_id=data_key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    model_name=model.attr_model_name,
                    variant_name=VARIANT_NAME,
                    serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                        memory_size_in_mb=MEMORY_MB, max_concurrency=MAX_CONCURRENCY
                    ),
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_name=self.endpoint_name, endpoint_config_name=config.attr_endpoint_config_name
        )
        self.endpoint.node.add_dependency(self.log_group)

    def _execution_role(self, artifacts_bucket: s3.IBucket, data_key: kms.IKey) -> tuple[iam.Role, iam.ManagedPolicy]:
        stack = Stack.of(self)
        role = iam.Role(self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
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
                    actions=["s3:GetObject"], resources=[artifacts_bucket.arn_for_objects(MODEL_ARCHIVE_KEY)]
                ),
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[data_key.key_arn]),
                iam.PolicyStatement(actions=list(ECR_PULL_ACTIONS), resources=[image_repository]),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(actions=list(LOG_ACTIONS), resources=[self.log_group.log_group_arn]),
            ],
        )
        acknowledge_wildcard_resources(
            policy,
            "ecr:GetAuthorizationToken has no resource-level permissions; the XGBoost image repository belongs"
            " to SageMaker's account for the region, unknown at synth time; log streams are named by SageMaker.",
        )
        return role, policy
