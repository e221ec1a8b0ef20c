"""A STANDARD state machine from ASL text, logged and traced the way every clinrisk machine is."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.naming import deployment_suffix


def logged_state_machine(
    scope: Construct,
    *,
    name: str,
    definition: str,
    substitutions: Mapping[str, str],
    role: iam.IRole,
    log_key: kms.IKey,
) -> tuple[sfn.StateMachine, logs.LogGroup]:
    """Logging level ALL without execution data (inputs may be untrusted and task tokens must not sit in a
    year-long log; the execution history keeps them for 90 days), KMS-encrypted, X-Ray on."""
    log_group = logs.LogGroup(
        scope,
        "Logs",
        # Step Functions vends logs to groups under this prefix without a resource policy per group;
        # the suffix lets a destroyed stack's retained group stay beside the next deployment's.
        log_group_name=f"/aws/vendedlogs/states/{name}-{deployment_suffix(scope)}",
        retention=LOG_RETENTION,
        encryption_key=log_key,
        removal_policy=RemovalPolicy.RETAIN,
    )
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=name,
        state_machine_type=sfn.StateMachineType.STANDARD,
        definition_body=sfn.DefinitionBody.from_string(definition),
        definition_substitutions=dict(substitutions),
        role=role,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        tracing_enabled=True,
    )
    return state_machine, log_group
