"""Customer-managed KMS keys: one for data and model artifacts, one for messages and logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

# Services that publish to the encrypted SNS topics (CloudWatch alarms, EventBridge rules), and SNS
# itself when it moves an undeliverable message to the encrypted dead-letter queue, must be able to
# use the messaging key, or their notifications are dropped without an error.
PUBLISHING_SERVICES = ("cloudwatch.amazonaws.com", "sns.amazonaws.com")
# EventBridge's deliveries to an encrypted topic do not carry aws:SourceAccount, so a statement
# conditioned on it would never match and every rule's notification would be dropped silently.
# Its statement has no such condition (the form of EventBridge's own guide for encrypted targets).
EVENTS_SERVICE = "events.amazonaws.com"


class EncryptionKeys(Construct):
    """Two keys so that a principal allowed to read alerts is not thereby allowed to read patient data."""

    data: kms.Key
    messaging: kms.Key

    def __init__(self, scope: Construct, id: str, *, env_name: str) -> None:
        super().__init__(scope, id)
        self.data = self._key("Data", f"clinrisk {env_name}: training data, model artifacts, prediction capture")
        self.messaging = self._key("Messaging", f"clinrisk {env_name}: SNS topics and CloudWatch Logs")
        self._allow_publishing_services()
        self._allow_cloudwatch_logs()

    def _key(self, id: str, description: str) -> kms.Key:
        return kms.Key(
            self,
            id,
            description=description,
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            # Losing a key loses everything encrypted with it: keep it when the stack goes.
            removal_policy=RemovalPolicy.RETAIN,
            pending_window=Duration.days(30),
        )

    def _allow_publishing_services(self) -> None:
        account = Stack.of(self).account
        self.messaging.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAwsServicesToPublishToEncryptedTopics",
                principals=[iam.ServicePrincipal(service) for service in PUBLISHING_SERVICES],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            )
        )
        self.messaging.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeToPublishToEncryptedTopics",
                principals=[iam.ServicePrincipal(EVENTS_SERVICE)],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )

    def _allow_cloudwatch_logs(self) -> None:
        # Encrypted log groups: CloudWatch Logs uses the key on the log groups' behalf, and only
        # for log groups of this account and region (the encryption context names the log group).
        stack = Stack.of(self)
        log_groups = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
        self.messaging.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsForThisAccountsLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey",
                ],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            )
        )
