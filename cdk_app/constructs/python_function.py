"""One clinrisk Lambda function: Python 3.12 on x86_64, from a bundle that `make build` made, or from
a container image built from a staged context at deploy time (`image`, cdk_app/monitoring_image.py)
for code whose packages exceed the 250 MB zip limit; the image's CMD is the handler.

Every function gets the same hardening, so a stack only says what differs (handler, memory,
environment, permissions):
- its own role, with nothing but writing to its own log group (grants are added where the
  function is wired to what it uses);
- a KMS-encrypted log group with a fixed retention;
- X-Ray active tracing;
- an encrypted dead-letter queue (SSE-SQS, so no KMS grant with wildcard actions is needed),
  which is also the on-failure destination of asynchronous invocations, so a failed event is
  kept, not dropped. Wired through CloudFormation properties with an explicit `sqs:SendMessage`
  statement, because the CDK props would add their own (wider) grants;
- reserved concurrency, so one runaway function cannot starve the others in the account, as far as
  the `reservedConcurrency` setting allows (cdk_app.concurrency);
- environment variables encrypted with the data key (they name buckets and topics, never data).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.bundling import bundle_directory
from cdk_app.compliance import acknowledge
from cdk_app.constructs.role_findings import INLINE_POLICY_REASON, acknowledge_role_findings

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME = lambda_.Runtime.PYTHON_3_12  # the bundles' wheels are built for cp312 (cdk_app.bundling)
LOG_RETENTION = logs.RetentionDays.ONE_YEAR
# Failed asynchronous events are kept for the longest time SQS allows, to be inspected and replayed.
DEAD_LETTER_RETENTION = Duration.days(14)
DEFAULT_TIMEOUT = Duration.seconds(30)
# What Lambda does with the execution role to attach a function to a VPC (the managed policy
# AWSLambdaVPCAccessExecutionRole, without its logging part). The CDK adds that policy only to a role
# it creates itself; this role is ours, so the statement is explicit.
NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
NETWORK_INTERFACE_REASON = (
    "In the VPC, Lambda creates, describes and deletes the function's network interfaces with the execution role;"
    " DescribeNetworkInterfaces works only on Resource '*' and the interfaces' ids are made by Lambda, so the"
    " ENI actions (AWSLambdaVPCAccessExecutionRole's) are granted on '*'."
)


class FunctionNetwork(Protocol):
    """Where a function runs in the `vpc=true` variant: `cdk_app.constructs.network.PrivateNetwork`."""

    @property
    def vpc(self) -> ec2.IVpc: ...

    @property
    def function_security_group(self) -> ec2.ISecurityGroup: ...


class PythonFunction(Construct):
    """A hardened Lambda function; `function` is what stacks grant to and wire up."""

    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup
    dead_letters: sqs.Queue
    concurrency_is_a_lock: bool

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bundle: str | None = None,
        image: Path | None = None,
        handler: str,
        description: str,
        data_key: kms.IKey,
        log_key: kms.IKey,
        environment: Mapping[str, str] | None = None,
        memory_size: int = 512,
        timeout: Duration = DEFAULT_TIMEOUT,
        reserved_concurrency: int = 10,
        concurrency_is_a_lock: bool = False,
        network: FunctionNetwork | None = None,
    ) -> None:
        super().__init__(scope, id)
        # Whether the reservation serialises work, so the `reservedConcurrency` setting keeps it (cdk_app.concurrency).
        self.concurrency_is_a_lock = concurrency_is_a_lock
        self.log_group = logs.LogGroup(
            self, "Logs", retention=LOG_RETENTION, encryption_key=log_key, removal_policy=RemovalPolicy.RETAIN
        )
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        self.log_group.grant_write(self.role)
        if network is not None:
            self.role.add_to_policy(iam.PolicyStatement(actions=list(NETWORK_INTERFACE_ACTIONS), resources=["*"]))
        self.dead_letters = self._dead_letter_queue()
        self.function = lambda_.Function(
            self,
            "Function",
            architecture=lambda_.Architecture.X86_64,
            **_code(bundle=bundle, image=image, handler=handler),
            description=description,
            role=self.role,
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            environment=dict(environment or {}),
            environment_encryption=data_key,
            vpc=network.vpc if network else None,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED) if network else None,
            security_groups=[network.function_security_group] if network else None,
        )
        self._send_failures_to(self.dead_letters)
        self._acknowledge(network is not None, from_image=image is not None)

    def _send_failures_to(self, queue: sqs.Queue) -> None:
        self.role.add_to_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn]))
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.dead_letter_config = lambda_.CfnFunction.DeadLetterConfigProperty(target_arn=queue.queue_arn)
        lambda_.CfnEventInvokeConfig(
            self,
            "AsyncFailures",
            function_name=self.function.function_name,
            qualifier="$LATEST",
            maximum_retry_attempts=2,
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=queue.queue_arn)
            ),
        )

    def _dead_letter_queue(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )

    def _acknowledge(self, in_vpc: bool, *, from_image: bool) -> None:
        for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
            acknowledge(
                self.dead_letters,
                rule,
                "This queue is the function's own dead-letter queue and on-failure destination; a dead-letter"
                " queue behind it would only move the same failed events once more.",
            )
        # Only the bare "*" (cdk-nag names each wildcard resource); object-prefix wildcards granted
        # to a function are acknowledged where they are granted, with their own reason.
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions, so active"
            " tracing needs Resource '*'." + (" " + NETWORK_INTERFACE_REASON if in_vpc else ""),
        )
        acknowledge(self.role, "HIPAA.Security-IAMNoInlinePolicy", INLINE_POLICY_REASON)
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(
                self.function,
                rule,
                "The image's Python is its base image's (public.ecr.aws/lambda/python:3.12), tied to its lock by"
                " tests/lambda_image; moving it is a deliberate change of base image, lock and tests."
                if from_image
                else "The bundle's compiled wheels (numpy, pydantic-core) are built for CPython 3.12, which Lambda"
                " supports on Amazon Linux 2023; moving runtime is a deliberate change of lock files and smoke tests.",
            )
        if not in_vpc:
            acknowledge(
                self.function,
                "HIPAA.Security-LambdaInsideVPC",
                "The function reaches only AWS service APIs over TLS with IAM auth and holds no network listener;"
                " deployments that need private networking set the `vpc` context key, which puts it in a VPC.",
            )


def _code(*, bundle: str | None, image: Path | None, handler: str) -> dict[str, Any]:
    """The function's code, runtime and handler: a zip bundle, or an image whose CMD is the handler."""
    if (bundle is None) == (image is None):
        raise ValueError("a function runs from exactly one of a bundle or an image")
    if image is not None:
        return {
            "code": lambda_.Code.from_asset_image(str(image), cmd=[handler], platform=ecr_assets.Platform.LINUX_AMD64),
            "handler": lambda_.Handler.FROM_IMAGE,
            "runtime": lambda_.Runtime.FROM_IMAGE,
        }
    assert bundle is not None
    return {
        "code": lambda_.Code.from_asset(str(bundle_directory(bundle, REPO_ROOT))),
        "handler": handler,
        "runtime": RUNTIME,
    }


def acknowledge_function_findings(reasons: Mapping[PythonFunction, str]) -> None:
    """Each function's role findings, with the reason given for its wildcard resources, and the
    runtime finding of the bundles that hold pandas as well as numpy."""
    for function, reason in reasons.items():
        acknowledge_role_findings(function.role, wildcard_reason=reason)
        acknowledge(
            function.function,
            "Serverless-LambdaLatestVersion",
            "The bundles' compiled wheels (numpy, pandas, pydantic-core) are built for CPython 3.12, which"
            " Lambda supports on Amazon Linux 2023; moving runtime is a deliberate change of locks and"
            " smoke tests.",
        )
