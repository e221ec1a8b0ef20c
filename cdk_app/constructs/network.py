"""The private network of the `vpc=true` variant: isolated subnets, VPC endpoints, flow logs, security groups.

No internet gateway and no NAT: the two subnets (two AZs) are PRIVATE_ISOLATED, so their route tables
know only the VPC itself and, through the gateway endpoint, S3. Everything the Lambdas and the
training job call goes through an endpoint, each listed below with the call that needs it:

| endpoint | type | called by |
|---|---|---|
| S3 | gateway (free) | every function (buckets), the training job (channels, code tarball, output) |
| states | interface | approval decision: SendTaskSuccess / SendTaskFailure |
| sns | interface | approval request: Publish to the approvals topic |
| ssm | interface | approval request: GetParameter (the API URL) |
| secretsmanager | interface | approval request and decision: GetSecretValue (the HMAC secret) |
| experiments | interface | evaluate and promote: the SageMaker MLflow tracking server's REST API |
| sagemaker.api | interface | promote, only with servingMode=sagemaker: deploys the champion to the endpoint |
| sagemaker.runtime | interface | predict, only with servingMode=sagemaker: InvokeEndpoint |

What needs no endpoint, because an AWS service does it on the function's behalf, outside the VPC:
Lambda ships each function's logs (CloudWatch Logs, EMF metrics included) and its X-Ray segments
(the daemon Lambda runs listens on a link-local address of the sandbox), decrypts environment
variables, writes to dead-letter queues, and creates the network interfaces; S3, SNS and Secrets
Manager call KMS themselves; SageMaker pulls the training image from ECR and ships the job's logs.
The retraining and batch state machines run in Step Functions, outside any VPC.

Endpoint policies are a perimeter, not the authorisation (the roles are): each names the actions
the functions are granted for that service and admits only principals of this account; the S3
policy also admits only buckets of this account (the CDK assets bucket, which holds the training
source, is one of them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.mlflow_server import REGISTRY_ACTIONS, TRACKING_ACTIONS
from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.constructs.role_findings import INLINE_POLICY_REASON

VPC_CIDR = "10.0.0.0/16"
AVAILABILITY_ZONES = 2
SUBNET_MASK = 20  # 4,091 addresses per subnet: Lambda's shared ENIs, training ENIs, one per endpoint
ISOLATED = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
HTTPS = ec2.Port.tcp(443)
# What the roles inside the VPC do in S3 (cdk_app/permissions.py): nothing else passes the endpoint.
S3_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:ListBucket")


@dataclass(frozen=True)
class EndpointSpec:
    """One interface endpoint: the service, the actions its policy allows, and who calls it."""

    id: str
    service: ec2.InterfaceVpcEndpointAwsService
    actions: tuple[str, ...]
    called_by: str


APPROVAL_ENDPOINTS = (
    EndpointSpec(
        "StepFunctions",
        ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
        ("states:SendTaskSuccess", "states:SendTaskFailure"),
        "the approval decision function answers the waiting approval task",
    ),
    EndpointSpec(
        "Sns",
        ec2.InterfaceVpcEndpointAwsService.SNS,
        ("sns:Publish",),
        "the approval request function e-mails the approve/reject links",
    ),
    EndpointSpec(
        "Ssm",
        ec2.InterfaceVpcEndpointAwsService.SSM,
        ("ssm:GetParameter",),
        "the approval request function reads the API URL parameter, promote the collection endpoint parameter",
    ),
    EndpointSpec(
        "SecretsManager",
        ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
        ("secretsmanager:GetSecretValue",),
        "both approval functions read the HMAC secret that signs the links",
    ),
)
# The sagemaker-mlflow plugin calls https://<region>.experiments.sagemaker.aws, signed for the
# `sagemaker-mlflow` service. Its PrivateLink service is aws.sagemaker.<region>.experiments
# (SageMaker developer guide, "Connecting to an MLflow tracking server through an Interface VPC
# Endpoint", mlflow-interface-endpoint.html; the CDK's SAGEMAKER_EXPERIMENTS, aws/aws-cdk#31538).
MLFLOW_ENDPOINT = EndpointSpec(
    "MlflowTracking",
    ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_EXPERIMENTS,
    (*TRACKING_ACTIONS, *REGISTRY_ACTIONS),
    "evaluate logs the candidate and promote moves the registry's aliases on the MLflow tracking server",
)
CAPTURE_ENDPOINT = EndpointSpec(
    "Firehose",
    ec2.InterfaceVpcEndpointAwsService.KINESIS_FIREHOSE,
    ("firehose:PutRecordBatch",),
    "the predict function sends each scored encounter to the capture stream",
)
SAGEMAKER_SERVING_ENDPOINTS = (
    EndpointSpec(
        "SageMakerApi",
        ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
        (
            "sagemaker:CreateModel",
            "sagemaker:CreateEndpointConfig",
            "sagemaker:DescribeEndpoint",
            "sagemaker:CreateEndpoint",
            "sagemaker:UpdateEndpoint",
        ),
        "promote deploys each new champion to the serverless endpoint (servingMode=sagemaker)",
    ),
    EndpointSpec(
        "SageMakerRuntime",
        ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
        ("sagemaker:InvokeEndpoint",),
        "the predict function scores on the serverless endpoint (servingMode=sagemaker)",
    ),
)

# Explanations call Bedrock (Converse, Titan embeddings, the guardrail) from the isolated subnets;
# the collection has its own OpenSearch Serverless VPC endpoint (cdk_app/constructs/vector_collection.py).
BEDROCK_ENDPOINT = EndpointSpec(
    "BedrockRuntime",
    ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
    ("bedrock:InvokeModel", "bedrock:ApplyGuardrail"),
    "the explain function writes with Converse and both explain functions embed with Titan",
)

# The model alarms' notices name the model version that breached, which only CloudWatch's
# GetMetricData can say (cdk_app/constructs/alarm_notices.py).
MONITORING_ENDPOINT = EndpointSpec(
    "CloudWatchMonitoring",
    ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    ("cloudwatch:GetMetricData",),
    "the alarm-notice function asks CloudWatch which model version an alarm's query found worst",
)


def endpoint_specs(*, sagemaker_serving: bool) -> tuple[EndpointSpec, ...]:
    """The interface endpoints the deployment's functions call; each is billed per AZ-hour, so none extra."""
    return (
        *APPROVAL_ENDPOINTS,
        MLFLOW_ENDPOINT,
        CAPTURE_ENDPOINT,
        BEDROCK_ENDPOINT,
        MONITORING_ENDPOINT,
        *(SAGEMAKER_SERVING_ENDPOINTS if sagemaker_serving else ()),
    )


def outside(cidr: str) -> list[str]:
    """IPv4 blocks that together cover every address except `cidr`.

    Security groups cannot name the S3 prefix list here: its id differs per region and CloudFormation
    has no attribute for it, and these stacks are environment-agnostic. So HTTPS egress goes to
    "anywhere but the VPC": with no internet gateway or NAT, the only route out of the subnets is the
    S3 gateway endpoint's, so that reaches S3 and nothing else, and no rule opens the VPC's own
    addresses beyond the endpoints' security group.
    """
    everything = ipaddress.IPv4Network("0.0.0.0/0")
    return sorted(str(block) for block in everything.address_exclude(ipaddress.IPv4Network(cidr)))


class PrivateNetwork(Construct):
    """`vpc` with isolated subnets only; `function_security_group` for the Lambdas, `training_security_group`
    for the SageMaker training job; `endpoints` by id."""

    vpc: ec2.Vpc
    flow_logs: logs.LogGroup
    function_security_group: ec2.SecurityGroup
    training_security_group: ec2.SecurityGroup
    endpoint_security_group: ec2.SecurityGroup
    s3_endpoint: ec2.GatewayVpcEndpoint
    endpoints: dict[str, ec2.InterfaceVpcEndpoint]

    def __init__(self, scope: Construct, id: str, *, log_key: kms.IKey, endpoints: Sequence[EndpointSpec]) -> None:
        super().__init__(scope, id)
        self.flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=LOG_RETENTION, encryption_key=log_key, removal_policy=RemovalPolicy.RETAIN
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=AVAILABILITY_ZONES,
            nat_gateways=0,
            create_internet_gateway=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=SUBNET_MASK
                )
            ],
            # The default security group loses its rules, so nothing can rely on it by accident.
            restrict_default_security_group=True,
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_logs, self._flow_log_role()),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )
        self._security_groups()
        self.s3_endpoint = self._s3_endpoint()
        self.endpoints = {spec.id: self._interface_endpoint(spec) for spec in endpoints}

    @property
    def subnet_ids(self) -> list[str]:
        return list(self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids)

    @property
    def vpc_arn(self) -> str:
        stack = Stack.of(self.vpc)
        return f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:vpc/{self.vpc.vpc_id}"

    def _flow_log_role(self) -> iam.Role:
        account = Stack.of(self).account
        role = iam.Role(
            self,
            "FlowLogsRole",
            assumed_by=iam.ServicePrincipal(
                "vpc-flow-logs.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description="clinrisk VPC flow logs: write to the flow-log group",
        )
        acknowledge(role, "HIPAA.Security-IAMNoInlinePolicy", INLINE_POLICY_REASON)
        return role

    def _security_groups(self) -> None:
        self.endpoint_security_group = self._group("Endpoints", "clinrisk VPC endpoints: HTTPS from the functions")
        self.function_security_group = self._group(
            "Functions", "clinrisk Lambdas: HTTPS to the VPC endpoints and, through the gateway endpoint, S3"
        )
        self.training_security_group = self._group(
            "Training", "clinrisk SageMaker training job: HTTPS to S3 through the gateway endpoint only"
        )
        self.function_security_group.add_egress_rule(
            self.endpoint_security_group, HTTPS, "HTTPS to the interface endpoints"
        )
        self.endpoint_security_group.add_ingress_rule(
            self.function_security_group, HTTPS, "HTTPS from the clinrisk functions"
        )
        for group in (self.function_security_group, self.training_security_group):
            for block in outside(VPC_CIDR):
                group.add_egress_rule(ec2.Peer.ipv4(block), HTTPS, "HTTPS to S3 (the only route out: the S3 gateway)")

    def _group(self, id: str, description: str) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(self, id, vpc=self.vpc, description=description, allow_all_outbound=False)

    def _s3_endpoint(self) -> ec2.GatewayVpcEndpoint:
        stack = Stack.of(self)
        endpoint = self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[ISOLATED])
        endpoint.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=list(S3_ACTIONS),
                resources=[f"arn:{stack.partition}:s3:::*"],
                conditions={
                    "StringEquals": {"aws:ResourceAccount": stack.account, "aws:PrincipalAccount": stack.account}
                },
            )
        )
        return endpoint

    def endpoint_url(self, spec: EndpointSpec) -> str:
        """https://<the endpoint's own regional DNS name>, which resolves to its interfaces whether or not
        the service's private DNS name does. DnsEntries holds "<hosted zone id>:<DNS name>" strings, the
        regional name first."""
        first_entry = Fn.select(0, self.endpoints[spec.id].vpc_endpoint_dns_entries)
        return f"https://{Fn.select(1, Fn.split(':', first_entry))}"

    def _interface_endpoint(self, spec: EndpointSpec) -> ec2.InterfaceVpcEndpoint:
        endpoint = ec2.InterfaceVpcEndpoint(
            self,
            spec.id,
            vpc=self.vpc,
            service=spec.service,
            subnets=ISOLATED,
            security_groups=[self.endpoint_security_group],
            open=False,  # no rule for the whole VPC CIDR: only the functions' group gets in
            private_dns_enabled=True,
        )
        endpoint.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=list(spec.actions),
                resources=["*"],
                conditions={"StringEquals": {"aws:PrincipalAccount": Stack.of(self).account}},
            )
        )
        return endpoint
