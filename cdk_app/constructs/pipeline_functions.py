"""The retraining pipeline's Lambda functions and what each may touch, statement by statement.

| function | bundle | reads | writes |
|---|---|---|---|
| validate | pipeline | the data bucket | runs/<run>/channels/ |
| evaluate | pipeline | runs/ (archive, test channel, champion) | runs/<run>/model/, MLflow, mlflow/ artifacts |
| promote | promote | the MLflow registry | MLflow aliases, the serving pointer (serving/champion.json) |
| approval request | predict | the HMAC secret, the API URL parameter | the approvals topic |
| approval decision | predict | the HMAC secret | the waiting task (SendTaskSuccess/Failure) |

No stage function publishes to SNS: the state machine's Notify states do, so the stage functions
get no topic. Every stage function gets MLFLOW_TRACKING_URI, which the aws backend requires to
build its ports even where the stage never calls MLflow (validate); only evaluate and promote are
allowed to call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_app.constructs.approval_secret import ApprovalSecret
from cdk_app.constructs.mlflow_server import MlflowServer
from cdk_app.constructs.network import MLFLOW_ENDPOINT, PrivateNetwork
from cdk_app.constructs.python_function import (
    NETWORK_INTERFACE_REASON,
    PythonFunction,
    acknowledge_function_findings,
)
from cdk_app.environment import backend_environment, settings_environment
from cdk_app.permissions import KMS_ENCRYPT, allow_publish, allow_read_objects, allow_write_objects
from clinrisk.registry.approval import ApprovalDecisionSettings, ApprovalRequestSettings
from clinrisk.registry.serving_pointer import POINTER_KEY
from clinrisk.settings import GateRules, Settings

RUNS_PREFIX = "runs/"
# Read by sagemaker_mlflow.mlflow_sagemaker_helpers (sagemaker-mlflow 0.5.0) in place of the URL it builds.
MLFLOW_CUSTOM_ENDPOINT_VARIABLE = "SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT"
# Lambda's only writable disk: the settings' `home` (MLflow's local artifact staging) goes there.
METRICS_NAMESPACE = "clinrisk"
# The stage Lambdas read whole encounter files into pandas: memory buys CPU, and 3008 MB gives two
# vCPUs. Validate reads and splits one file (UCI: ~100k rows, seconds); evaluate also bootstraps
# the AUC interval and logs to MLflow; both keep a wide margin under Lambda's 15-minute limit.
STAGE_MEMORY_MB = 3008
VALIDATE_TIMEOUT = Duration.minutes(10)
EVALUATE_TIMEOUT = Duration.minutes(15)
# A few registry calls and one PutObject, and the champion's similar-patient documents loaded into
# OpenSearch Serverless: one training channel's encounters (~60,000 for the UCI data) in _bulk batches of 500.
PROMOTE_TIMEOUT = Duration.minutes(10)
APPROVAL_TIMEOUT = Duration.seconds(30)  # a secret, a signature and one API call; API Gateway waits 29 s


@dataclass(frozen=True)
class PipelineResources:
    """What the functions are wired to (Foundation and Mlflow stacks, the approval secret); with a
    `network` (the VPC variant) every function runs in its isolated subnets."""

    env_name: str
    data: s3.IBucket
    artifacts: s3.IBucket
    data_key: kms.IKey
    messaging_key: kms.IKey
    approvals: sns.ITopic
    mlflow: MlflowServer
    secret: ApprovalSecret
    gate: GateRules
    network: PrivateNetwork | None = None


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One stage function: `lambdas.<name>.handler.handler` from `bundle`."""

    name: str
    bundle: str
    timeout: Duration
    memory_size: int
    concurrency: int = 2  # a run at a time, and one more that overlaps it
    concurrency_is_a_lock: bool = False
    calls_mlflow: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)


def api_url_parameter(env_name: str) -> str:
    """The SSM parameter the Serving stack writes with the API's base URL. The approval-request
    Lambda reads it at run time: a deploy-time reference would make this stack depend on Serving,
    which depends on this one."""
    return f"/clinrisk/{env_name}/api-url"


def collection_endpoint_parameter(env_name: str) -> str:
    """The SSM parameter the Explain stack writes with the OpenSearch Serverless collection endpoint.
    Promote reads it at run time to load each champion's similar-patient documents, for the same
    reason: the Explain stack depends on this one."""
    return f"/clinrisk/{env_name}/collection-endpoint"


class PipelineFunctions(Construct):
    validate: PythonFunction
    evaluate: PythonFunction
    promote: PythonFunction
    approval_request: PythonFunction
    approval_decision: PythonFunction

    def __init__(self, scope: Construct, id: str, *, resources: PipelineResources) -> None:
        super().__init__(scope, id)
        self._r = resources
        self.validate = self._stage(
            StageSpec(name="validate", bundle="pipeline", timeout=VALIDATE_TIMEOUT, memory_size=STAGE_MEMORY_MB)
        )
        self.evaluate = self._stage(
            StageSpec(
                name="evaluate",
                bundle="pipeline",
                timeout=EVALUATE_TIMEOUT,
                memory_size=STAGE_MEMORY_MB,
                calls_mlflow=True,
                # The deployment's gate (context `gate`), as clinrisk.settings.Settings reads it.
                environment=settings_environment(Settings, gate=resources.gate.model_dump_json()),
            )
        )
        # One promotion at a time account-wide: the registry's compare-and-set lock is per process,
        # so a reserved concurrency of 1 is what makes it a lock across concurrent runs.
        self.promote = self._stage(
            StageSpec(
                name="promote",
                bundle="promote",
                timeout=PROMOTE_TIMEOUT,
                memory_size=1024,
                concurrency=1,
                concurrency_is_a_lock=True,
                calls_mlflow=True,
                environment=settings_environment(
                    Settings, explain__opensearch_endpoint_parameter=collection_endpoint_parameter(resources.env_name)
                ),
            )
        )
        self.approval_request = self._approval_request()
        self.approval_decision = self._function(
            "ApprovalDecision",
            handler="lambdas.approval_decision.handler.handler",
            bundle="predict",
            description="clinrisk: approve/reject endpoint; answers the waiting approval task",
            environment=settings_environment(
                ApprovalDecisionSettings, approval_secret_arn=resources.secret.secret.secret_arn
            ),
            reserved_concurrency=5,
        )
        self._grant_stages()
        resources.secret.grant_read(self.approval_decision.role)
        self._acknowledge()

    @property
    def all(self) -> tuple[PythonFunction, ...]:
        return (self.validate, self.evaluate, self.promote, self.approval_request, self.approval_decision)

    @property
    def invoked_by_state_machine(self) -> tuple[lambda_.IFunction, ...]:
        return tuple(f.function for f in (self.validate, self.evaluate, self.approval_request, self.promote))

    def _function(
        self,
        id: str,
        *,
        handler: str,
        bundle: str,
        description: str,
        environment: Mapping[str, str],
        reserved_concurrency: int,
        concurrency_is_a_lock: bool = False,
        timeout: Duration = APPROVAL_TIMEOUT,
        memory_size: int = 512,
    ) -> PythonFunction:
        return PythonFunction(
            self,
            id,
            bundle=bundle,
            handler=handler,
            description=description,
            data_key=self._r.data_key,
            log_key=self._r.messaging_key,
            environment={
                "POWERTOOLS_SERVICE_NAME": "clinrisk",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                **environment,
            },
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrency=reserved_concurrency,
            concurrency_is_a_lock=concurrency_is_a_lock,
            network=self._r.network,
        )

    def _stage(self, spec: StageSpec) -> PythonFunction:
        environment = {
            **backend_environment(artifacts_bucket=self._r.artifacts.bucket_name, kms_key_id=self._r.data_key.key_arn),
            "MLFLOW_TRACKING_URI": self._r.mlflow.arn,
            **self._mlflow_endpoint(spec),
            **spec.environment,
        }
        return self._function(
            spec.name.capitalize(),
            handler=f"lambdas.{spec.name}.handler.handler",
            bundle=spec.bundle,
            description=f"clinrisk retraining: the {spec.name} stage",
            environment=environment,
            reserved_concurrency=spec.concurrency,
            concurrency_is_a_lock=spec.concurrency_is_a_lock,
            timeout=spec.timeout,
            memory_size=spec.memory_size,
        )

    def _mlflow_endpoint(self, spec: StageSpec) -> dict[str, str]:
        """In the VPC, the sagemaker-mlflow plugin sends its calls to the `experiments` interface endpoint's
        own DNS name (SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT, a URL that replaces
        https://<region>.experiments.sagemaker.aws): it resolves to the endpoint whether or not the service's
        private DNS name is served in the VPC."""
        if self._r.network is None or not spec.calls_mlflow:
            return {}
        return {MLFLOW_CUSTOM_ENDPOINT_VARIABLE: self._r.network.endpoint_url(MLFLOW_ENDPOINT)}

    def _approval_request(self) -> PythonFunction:
        r = self._r
        function = self._function(
            "ApprovalRequest",
            handler="lambdas.approval_request.handler.handler",
            bundle="predict",
            description="clinrisk: e-mails signed approve/reject links for a gated model",
            environment=settings_environment(
                ApprovalRequestSettings,
                approvals_topic_arn=r.approvals.topic_arn,
                approval_secret_arn=r.secret.secret.secret_arn,
                approval_base_url_parameter=api_url_parameter(r.env_name),
            ),
            reserved_concurrency=2,
        )
        allow_publish(function.role, r.approvals, key=r.messaging_key)
        r.secret.grant_read(function.role)
        stack = Stack.of(self)
        parameter = f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter{api_url_parameter(r.env_name)}"
        function.role.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter]))
        return function

    def _grant_stages(self) -> None:
        r = self._r
        allow_read_objects(self.validate.role, r.data, key=r.data_key)
        allow_write_objects(self.validate.role, r.artifacts, key=r.data_key, prefixes=("runs/*/channels/",))

        allow_read_objects(self.evaluate.role, r.artifacts, key=r.data_key, prefixes=(RUNS_PREFIX,))
        allow_write_objects(self.evaluate.role, r.artifacts, key=r.data_key, prefixes=("runs/*/model/",))
        r.mlflow.grant_access(self.evaluate.role, log_artifacts=True)

        r.mlflow.grant_access(self.promote.role, registry_only=True)
        self.promote.role.add_to_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[r.artifacts.arn_for_objects(POINTER_KEY)])
        )
        self.promote.role.add_to_policy(iam.PolicyStatement(actions=list(KMS_ENCRYPT), resources=[r.data_key.key_arn]))
        # The champion's model directory, whose similar-patient documents promotion loads.
        allow_read_objects(self.promote.role, r.artifacts, key=r.data_key, prefixes=("runs/*/model/",))
        stack = Stack.of(self)
        parameter = collection_endpoint_parameter(r.env_name)
        parameter_arn = f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter{parameter}"
        self.promote.role.add_to_policy(iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn]))

    def _acknowledge(self) -> None:
        xray = (
            "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions, so tracing needs '*'."
        )
        if self._r.network is not None:
            xray += " " + NETWORK_INTERFACE_REASON
        reasons = {
            self.validate: "Validate reads the encounter file the run names, any key of the data bucket (which holds"
            " nothing else), and writes runs/*/channels/*, whose run id is made per execution. " + xray,
            self.evaluate: "Evaluate reads runs/* (the job's model archive, the test channel, the champion's model of"
            " an earlier run), writes runs/*/model/*, and logs MLflow artifacts under mlflow/*, all named by run"
            " ids made at run time. " + xray,
            self.promote: "Promote writes one object (the serving pointer), reads the champion's model directory"
            " runs/<run_id>/model/ (its similar-patient documents; run ids are made per execution) and calls MLflow"
            " by ARN. " + xray,
            self.approval_request: "Every resource is named (topic, secret, parameter). " + xray,
            self.approval_decision: "Every resource is named (secret, state machine). " + xray,
        }
        acknowledge_function_findings(reasons)

    def allow_decisions(self, state_machine_arn: str) -> None:
        """The decision endpoint answers tasks of this state machine only."""
        self.approval_decision.role.add_to_policy(
            iam.PolicyStatement(
                actions=["states:SendTaskSuccess", "states:SendTaskFailure"], resources=[state_machine_arn]
            )
        )
