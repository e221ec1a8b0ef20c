"""A STANDARD state machine from ASL text, logged and traced the way every clinrisk machine is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.constructs.role_findings import acknowledge_role_findings
from cdk_app.naming import deployment_suffix
from cdk_app.permissions import allow_publish


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


@dataclass(frozen=True, kw_only=True)
class MachineSpec:
    """What every clinrisk state machine is given: its name, the values of its definition's `${Name}`
    placeholders, the functions its Task states invoke, the alerts topic its Notify states publish to, the
    messaging key (the topic's, and its logs') and the data key."""

    name: str
    substitutions: Mapping[str, str]
    functions: Sequence[lambda_.IFunction]
    alerts: sns.ITopic
    messaging_key: kms.IKey
    data_key: kms.IKey


class LoggedStateMachine(Construct):
    """What every clinrisk state machine construct shares: the Step Functions role, allowed to invoke the
    machine's functions, that the subclass grants more to (`_add`, `_allow_alerts`) before `_build` makes the
    logged, traced machine with it."""

    state_machine: sfn.StateMachine
    role: iam.Role
    log_group: logs.LogGroup
    substitutions: dict[str, str]

    def __init__(self, scope: Construct, id: str, *, machine: MachineSpec) -> None:
        super().__init__(scope, id)
        self.machine = machine
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
        # The states name the functions by unqualified ARN, so no version or alias is invoked.
        self._add(["lambda:InvokeFunction"], [f.function_arn for f in machine.functions])

    def _add(self, actions: list[str], resources: list[str], conditions: dict[str, object] | None = None) -> None:
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))

    def _allow_alerts(self) -> None:
        allow_publish(self.role, self.machine.alerts, key=self.machine.messaging_key)

    def _build(self, *, definition: str, wildcard_reason: str) -> None:
        self.state_machine, self.log_group = logged_state_machine(
            self,
            name=self.machine.name,
            definition=definition,
            substitutions=self.substitutions,
            role=self.role,
            log_key=self.machine.messaging_key,
        )
        acknowledge_role_findings(self.role, wildcard_reason=wildcard_reason)
