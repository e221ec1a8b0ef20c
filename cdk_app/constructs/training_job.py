"""What the state machine's Train state starts: the SageMaker training job's role, image and source.

The job itself is created by the state machine (`aws-sdk:sagemaker:createTrainingJob`); this
construct holds what the job runs as and with. Its role can:
- read the `train` and `validation` channels (`runs/<run>/channels/...` in the artifacts bucket)
  and the source tarball (the `code` channel, in the CDK assets bucket);
- write its output (`runs/<run>/training/...`), SSE-KMS with the data key, which also encrypts the
  training volume (so the key's grant for the volume is allowed, for AWS resources only);
- write its container logs to /aws/sagemaker/TrainingJobs, and its metrics to that CloudWatch namespace;
- pull the SageMaker XGBoost framework image from its ECR repository;
- in the VPC variant (`vpc_arn`), let SageMaker create and delete the job's network interfaces in
  that VPC (the EC2 actions the SageMaker developer guide lists for jobs with a VpcConfig).
"""

from __future__ import annotations

from aws_cdk import Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.constructs.role_findings import acknowledge_role_findings
from cdk_app.constructs.training_source import TrainingSource
from cdk_app.images import xgboost_image_uri
from cdk_app.permissions import allow_read_objects, allow_write_objects

CHANNELS_PREFIX = "runs/*/channels/"  # clinrisk.pipeline.stages.validate_data writes runs/<run>/channels/<name>/
OUTPUT_PREFIX = "runs/*/training/"  # the Train state's S3OutputPath: s3://<artifacts>/runs/<run>/training
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"  # where SageMaker sends every training job's output
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
# SageMaker publishes a training job's metrics (train:auc, validation:logloss, ...) with the
# execution role; the namespace condition keeps the role from writing any other metrics.
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
# A training job with a VpcConfig ("CreateTrainingJob API: Execution Role Permissions", SageMaker
# developer guide): these change interfaces and are held to the VPC with the ec2:Vpc condition ...
NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
)
# ... except this one, granted without it. The Service Authorization Reference data we could check
# (iam-floyd's generated EC2 list) gives DeleteNetworkInterfacePermission no resource type, so no
# ec2:Vpc key reaches the policy: an ArnEquals on an absent key never matches, which would deny the
# clean-up. SageMaker's documented VPC policy for training jobs lists the action without a condition.
NETWORK_INTERFACE_UNCONDITIONED_ACTIONS = ("ec2:DeleteNetworkInterfacePermission",)
# ... and these only describe, which EC2 allows on Resource '*' only.
NETWORK_DESCRIBE_ACTIONS = (
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)


class TrainingJob(Construct):
    role: iam.Role
    image_uri: str
    source: TrainingSource

    def __init__(
        self, scope: Construct, id: str, *, artifacts: s3.IBucket, key: kms.IKey, vpc_arn: str | None = None
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.image_uri = xgboost_image_uri(self, image_scope="training")
        self.source = TrainingSource(self, "Source")
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="clinrisk training job: read its channels and code, write its model, use the data key",
        )
        allow_read_objects(self.role, artifacts, key=key, prefixes=(CHANNELS_PREFIX,))
        allow_write_objects(self.role, artifacts, key=key, prefixes=(OUTPUT_PREFIX,))
        self._allow_source()
        self._allow_volume_encryption(key)
        self._allow_logs(stack)
        self._allow_metrics()
        self._allow_image_pull(stack)
        if vpc_arn is not None:
            self._allow_network_interfaces(vpc_arn)
        self._acknowledge(in_vpc=vpc_arn is not None)

    def _add(self, actions: list[str], resources: list[str], conditions: dict[str, object] | None = None) -> None:
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))

    def _allow_source(self) -> None:
        asset = self.source.asset
        self._add(["s3:GetObject"], [asset.bucket.arn_for_objects(asset.s3_object_key)])
        # An S3Prefix channel lists its prefix, here the tarball's own key.
        self._add(["s3:ListBucket"], [asset.bucket.bucket_arn], {"StringLike": {"s3:prefix": [asset.s3_object_key]}})

    def _allow_volume_encryption(self, key: kms.IKey) -> None:
        # OutputDataConfig.KmsKeyId needs kms:Encrypt on the role; VolumeKmsKeyId a grant for the
        # EBS volume, which only AWS services may create on the role's behalf.
        self._add(["kms:Encrypt", "kms:DescribeKey"], [key.key_arn])
        self._add(["kms:CreateGrant"], [key.key_arn], {"Bool": {"kms:GrantIsForAWSResource": "true"}})

    def _allow_logs(self, stack: Stack) -> None:
        group = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:{TRAINING_LOG_GROUP}"
        self._add(["logs:CreateLogGroup", "logs:DescribeLogStreams"], [f"{group}:*"])
        self._add(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{group}:log-stream:*"])

    def _allow_metrics(self) -> None:
        # cloudwatch:PutMetricData has no resource type: '*' held to the training jobs' namespace.
        self._add(["cloudwatch:PutMetricData"], ["*"], {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}})

    def _allow_image_pull(self, stack: Stack) -> None:
        # <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>, resolved at deploy time.
        registry_account = Fn.select(0, Fn.split(".", self.image_uri))
        repository = Fn.select(0, Fn.split(":", Fn.select(1, Fn.split("/", self.image_uri))))
        repository_arn = f"arn:{stack.partition}:ecr:{stack.region}:{registry_account}:repository/{repository}"
        self._add(list(ECR_PULL_ACTIONS), [repository_arn])
        self._add(["ecr:GetAuthorizationToken"], ["*"])

    def _allow_network_interfaces(self, vpc_arn: str) -> None:
        self._add(list(NETWORK_INTERFACE_ACTIONS), ["*"], {"ArnEquals": {"ec2:Vpc": vpc_arn}})
        self._add(list(NETWORK_INTERFACE_UNCONDITIONED_ACTIONS), ["*"])
        self._add(list(NETWORK_DESCRIBE_ACTIONS), ["*"])

    def _acknowledge(self, *, in_vpc: bool) -> None:
        network = (
            " In the VPC, SageMaker creates the job's network interfaces with this role: their ids are made by"
            " EC2, so the interface actions are on '*' held to the VPC by the ec2:Vpc condition (except"
            " DeleteNetworkInterfacePermission, which has no ec2:Vpc key), and the EC2 Describe actions work"
            " only on '*'."
        )
        acknowledge_role_findings(
            self.role,
            wildcard_reason="Wildcards are in resources only, where names are made per run or by AWS: channels and"
            " output under runs/<run id>/ (runs/*/channels/*, runs/*/training/*), the training job's log streams"
            " under /aws/sagemaker/TrainingJobs, and ecr:GetAuthorizationToken and cloudwatch:PutMetricData"
            " (held to the /aws/sagemaker/TrainingJobs namespace), which have no resource-level permissions."
            " Every action is named." + (network if in_vpc else ""),
        )
