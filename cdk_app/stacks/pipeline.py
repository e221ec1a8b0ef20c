"""PipelineStack: the retraining state machine, its Lambdas and roles, its triggers and the approval functions.

The state machine's definition is `state_machines/retraining.asl.json`; this stack gives each of
its `${Name}` placeholders a value (see state_machines/README.md, "Substitution variables").
The approval-decision function is exposed for the Serving stack, which puts it behind
`GET|POST /v1/approvals/decision`; the approval-request function finds that endpoint through the
SSM parameter the Serving stack writes (`pipeline_functions.api_url_parameter`).
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.config import ClinriskConfig, ConfigError
from cdk_app.constructs.approval_secret import ApprovalSecret
from cdk_app.constructs.pipeline_functions import (
    EVALUATE_TIMEOUT,
    PROMOTE_TIMEOUT,
    VALIDATE_TIMEOUT,
    PipelineFunctions,
    PipelineResources,
)
from cdk_app.constructs.retraining_state_machine import RetrainingStateMachine, TrainingVpc
from cdk_app.constructs.retraining_triggers import RetrainingTriggers
from cdk_app.constructs.sagemaker_endpoint import ServerlessEndpoint
from cdk_app.constructs.training_job import TrainingJob
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from cdk_app.stacks.foundation import FoundationStack
from cdk_app.stacks.mlflow import MlflowStack
from cdk_app.stacks.props import ClinriskProps
from cdk_app.state_machine import execution_timeout_seconds, training_source_substitutions

# The cohort file a run validates when its input names no data_uri (clinrisk.pipeline.contracts.ValidateInput).
DEFAULT_DATA_KEY = "cohorts/current.csv"
# No instance storage (m5, unlike m5d), so VolumeKmsKeyId encrypts every disk the job has.
TRAINING_INSTANCE_TYPE = "ml.m5.xlarge"
# UCI-sized training takes minutes; an hour stops a runaway job, two allow for waiting on spot.
TRAINING_MAX_RUNTIME_SECONDS = 3600
TRAINING_MAX_WAIT_SECONDS = 7200
TRAINING_POLL_SECONDS = 60


class PipelineStack(Stack):
    functions: PipelineFunctions
    training: TrainingJob
    approval_secret: ApprovalSecret
    retraining: RetrainingStateMachine
    triggers: RetrainingTriggers
    endpoint: ServerlessEndpoint | None

    def __init__(self, scope: Construct, id: str, *, props: ClinriskProps, mlflow: MlflowStack) -> None:
        super().__init__(
            scope, id, **props.naming(id, "the retraining state machine, its Lambdas, triggers and approvals")
        )
        config, foundation = props.config, props.foundation
        check_run_fits(config)
        approval_seconds = config.approval_timeout_hours * 3600
        keys, buckets, topics, network = foundation.keys, foundation.buckets, foundation.topics, foundation.network
        self.approval_secret = ApprovalSecret(self, "ApprovalSecret", key=keys.data, env_name=config.env)
        self.functions = PipelineFunctions(
            self,
            "Functions",
            resources=PipelineResources(
                env_name=config.env,
                approvals=topics.approvals,
                mlflow=mlflow.server,
                secret=self.approval_secret,
                gate=config.gate,
                **props.function_wiring,
            ),
        )
        self.training = TrainingJob(
            self, "Training", artifacts=buckets.artifacts, key=keys.data, vpc_arn=network.vpc_arn if network else None
        )
        asset = self.training.source.asset
        self.endpoint = self._endpoint(config, foundation) if config.serving_mode == "sagemaker" else None
        functions = self.functions
        substitutions = {
            "AlertsTopicArn": topics.alerts.topic_arn,
            "ApprovalRequestFunctionArn": functions.approval_request.function.function_arn,
            "ApprovalRequired": json.dumps(config.approval_required),
            "ApprovalTimeoutSeconds": str(approval_seconds),
            "ArtifactsBucket": buckets.artifacts.bucket_name,
            "EvaluateFunctionArn": functions.evaluate.function.function_arn,
            "KmsKeyId": keys.data.key_arn,
            "ManagedSpotTraining": json.dumps(config.managed_spot_training),
            "PromoteFunctionArn": functions.promote.function.function_arn,
            "TrainingDataUri": f"s3://{buckets.data.bucket_name}/{DEFAULT_DATA_KEY}",
            "TrainingImageUri": self.training.image_uri,
            "TrainingInstanceType": TRAINING_INSTANCE_TYPE,
            "TrainingMaxRuntimeSeconds": str(TRAINING_MAX_RUNTIME_SECONDS),
            "TrainingMaxWaitSeconds": str(TRAINING_MAX_WAIT_SECONDS),
            "TrainingPollSeconds": str(TRAINING_POLL_SECONDS),
            "TrainingRoleArn": self.training.role.role_arn,
            **training_source_substitutions(asset.s3_bucket_name, asset.s3_object_key),
            "ValidateFunctionArn": functions.validate.function.function_arn,
        }
        self.retraining = RetrainingStateMachine(
            self,
            "Retraining",
            machine=props.machine(
                f"clinrisk-{config.env}-retraining", substitutions, functions.invoked_by_state_machine
            ),
            training_role=self.training.role,
            training_vpc=(
                TrainingVpc(
                    subnet_ids=network.subnet_ids,
                    security_group_ids=[network.training_security_group.security_group_id],
                )
                if network
                else None
            ),
        )
        functions.allow_decisions(self.retraining.state_machine.state_machine_arn)
        self.triggers = RetrainingTriggers(
            self,
            "Triggers",
            state_machine=self.retraining.state_machine,
            schedules=config.task_schedules(),
            alerts=topics.alerts,
            env_name=config.env,
        )
        CfnOutput(
            self,
            "StateMachineArn",
            value=self.retraining.state_machine.state_machine_arn,
            description="CLINRISK_STATE_MACHINE_ARN for `clinrisk pipeline start`",
        )

    def _endpoint(self, config: ClinriskConfig, foundation: FoundationStack) -> ServerlessEndpoint:
        """The `sagemaker` serving mode: one serverless endpoint per task; promotion deploys each task's new
        champion to that task's endpoint (docs/deployment.md gives the reasons)."""
        endpoint = ServerlessEndpoint(
            self,
            "Endpoint",
            env_name=config.env,
            tasks=list(config.task_schedules()),
            artifacts_bucket=foundation.buckets.artifacts,
            data_key=foundation.keys.data,
            log_key=foundation.keys.messaging,
            source=self.training.source.asset,
        )
        promote = self.functions.promote
        endpoint.allow_deploy(promote.function)
        for name, value in endpoint.environment.items():
            promote.function.add_environment(name, value)
        acknowledge_wildcard_resources(
            promote.role,
            "Promotion deploys each champion to the endpoint: it reads that version's model directory"
            " runs/<run_id>/model/ and writes its archive under serving/sagemaker/, and creates the SageMaker model"
            " and endpoint configuration named <endpoint>-v<version>-<checksum>; run ids and versions are only"
            " known at run time.",
        )
        return endpoint

    @property
    def state_machine(self) -> sfn.IStateMachine:
        return self.retraining.state_machine

    @property
    def approval_decision_function(self) -> lambda_.IFunction:
        """The Serving stack routes `/v1/approvals/decision` to it."""
        return self.functions.approval_decision.function


def check_run_fits(config: ClinriskConfig) -> None:
    """A run's longest path (every stage at its timeout, training at its longest wait, the approval
    at its timeout) must fit the state machine's TimeoutSeconds, or a slow approval would be cut
    off by the execution timeout and end as a failure instead of a clean "not approved"."""
    approval_seconds = config.approval_timeout_hours * 3600
    training = TRAINING_MAX_WAIT_SECONDS if config.managed_spot_training else TRAINING_MAX_RUNTIME_SECONDS
    stages = sum(int(t.to_seconds()) for t in (VALIDATE_TIMEOUT, EVALUATE_TIMEOUT, PROMOTE_TIMEOUT))
    longest = approval_seconds + training + TRAINING_POLL_SECONDS + stages
    limit = execution_timeout_seconds()
    if longest > limit:
        raise ConfigError(
            f"invalid cdk.json context: approvalTimeoutHours: {config.approval_timeout_hours} h of approval plus"
            f" up to {longest - approval_seconds} s of stages and training exceed the state machine's"
            f" {limit} s execution timeout"
        )
