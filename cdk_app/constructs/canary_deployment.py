"""Safe code deployments of a Lambda alias: CodeDeploy shifts 10% of traffic to the new version,
waits five minutes, then shifts the rest, and rolls back when one of `alarms` goes off.

CloudFormation starts the deployment itself when the alias's version changes (the alias gets a
CodeDeployLambdaAliasUpdate policy), so `cdk deploy` of new code is a canary, not a cut-over.

CodeDeploy's service role names the actions a Lambda deployment calls instead of the managed
policy AWSCodeDeployRoleForLambdaLimited (which the CDK would attach; the role is handed over
without policy updates so that it cannot).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

DEFAULT_CONFIG = codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES


class CanaryDeployment(Construct):
    """`deployment_group` deploys `alias` with `config` and rolls back on any of `alarms`."""

    role: iam.Role
    deployment_group: codedeploy.LambdaDeploymentGroup

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        alias: lambda_.Alias,
        alarms: Sequence[cloudwatch.IAlarm],
        config: codedeploy.ILambdaDeploymentConfig = DEFAULT_CONFIG,
    ) -> None:
        super().__init__(scope, id)
        if not alarms:
            raise ValueError("a canary deployment needs at least one alarm to roll back on")
        self.role, policy = self._service_role(alias, alarms)
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            application=codedeploy.LambdaApplication(self, "Application", application_name=name),
            deployment_group_name=f"{name}-{alias.alias_name}",
            alias=alias,
            deployment_config=config,
            alarms=list(alarms),
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
            role=self.role.without_policy_updates(),
        )
        # The role's permissions are a separate resource; CodeDeploy must not start without them.
        self.deployment_group.node.add_dependency(policy)

    def _service_role(
        self, alias: lambda_.Alias, alarms: Sequence[cloudwatch.IAlarm]
    ) -> tuple[iam.Role, iam.ManagedPolicy]:
        role = iam.Role(self, "ServiceRole", assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"))
        function_arn = alias.version.lambda_.function_arn
        policy = iam.ManagedPolicy(
            self,
            "ServicePolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig"],
                    # The alias ARN spelled out, not the alias's Ref: the alias waits for the deployment
                    # group, which waits for this policy, so a Ref would be a dependency cycle.
                    resources=[function_arn, f"{function_arn}:{alias.alias_name}"],
                ),
                iam.PolicyStatement(
                    actions=["cloudwatch:DescribeAlarms"], resources=[alarm.alarm_arn for alarm in alarms]
                ),
            ],
        )
        return role, policy
