"""ServingStack: the prediction API (API Gateway, Cognito, WAF), the predict Lambda and its canary deployments;
`POST /v1/explain` routes to the Explain stack's function.

Composition: Cognito issues machine-to-machine access tokens; the REST API checks them on every
route but `/health` (and the signed approval links) and proxies to the predict function's `live`
alias; the web ACL filters what reaches the stage; CodeDeploy moves the alias to each new version
as a canary and rolls back on the alarms. In the `sagemaker` serving mode the function scores on
the Pipeline stack's serverless endpoint, which promotion deploys to.

The API's base URL goes to the SSM parameter `/clinrisk/<env>/api-url`, where the approval-request
Lambda reads it at run time: a CloudFormation reference would make the Pipeline stack depend on
this one, which already depends on it for the approval decision function.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from cdk_app.constructs.api_auth import ApiAuth
from cdk_app.constructs.canary_deployment import CanaryDeployment
from cdk_app.constructs.handoff_parameter import handoff_parameter
from cdk_app.constructs.predict_service import PredictService
from cdk_app.constructs.rest_api import STAGE_NAME, ExplainRoute, PredictionApi
from cdk_app.constructs.sagemaker_endpoint import ServerlessEndpoint
from cdk_app.constructs.serving_alarms import ServingAlarms
from cdk_app.constructs.web_acl import ApiWebAcl
from cdk_app.stacks.explain import ExplainStack
from cdk_app.stacks.foundation import FoundationStack
from cdk_app.stacks.pipeline import PipelineStack
from cdk_app.stacks.props import ClinriskProps


def api_url_parameter_name(env_name: str) -> str:
    """Where the API's base URL (https://<id>.execute-api.<region>.amazonaws.com/<stage>/) is kept."""
    return f"/clinrisk/{env_name}/api-url"


class ServingStack(Stack):
    api: apigw.RestApi
    predict_function: lambda_.Function
    predict_alias: lambda_.Alias
    user_pool: cognito.UserPool
    web_acl: wafv2.CfnWebACL
    alarms: list[cloudwatch.Alarm]
    endpoint: ServerlessEndpoint | None

    def __init__(
        self, scope: Construct, id: str, *, props: ClinriskProps, pipeline: PipelineStack, explain: ExplainStack
    ) -> None:
        super().__init__(scope, id, **props.naming(id, "the prediction API (API Gateway, Cognito, WAF, Lambda)"))
        config, foundation, name = props.config, props.foundation, props.name
        auth = ApiAuth(self, "Auth", env_name=config.env)
        self.user_pool = auth.user_pool
        self.endpoint = pipeline.endpoint
        service = self._predict_service(foundation)
        self.predict_function, self.predict_alias = service.function, service.alias
        rest_api = PredictionApi(
            self,
            "Api",
            name=name,
            user_pool=auth.user_pool,
            predict_scope=ApiAuth.qualified("predict"),
            predict_handler=service.alias,
            log_key=foundation.keys.messaging,
            approval_decision=pipeline.approval_decision_function,
            explain=ExplainRoute(handler=explain.functions.explain.function, scope=ApiAuth.qualified("explain")),
            set_account_logging_role=config.api_gateway_account_role,
        )
        self.api = rest_api.api
        self.web_acl = ApiWebAcl(
            self, "Waf", name=f"{name}-api", resource_arn=rest_api.stage.stage_arn, log_key=foundation.keys.messaging
        ).web_acl
        self.alarms = ServingAlarms(
            self,
            "Alarms",
            name=name,
            service=service,
            api_name=name,
            stage_name=STAGE_NAME,
            topic=foundation.topics.alerts,
        ).alarms
        CanaryDeployment(self, "Canary", name=f"{name}-predict", alias=service.alias, alarms=self.alarms)
        handoff_parameter(
            self, "ApiUrl", name=api_url_parameter_name(config.env), value=self.api.url,
            what="Base URL of the clinrisk prediction API", reader="approval-request",
        )  # fmt: skip
        self._outputs(auth)

    def _predict_service(self, foundation: FoundationStack) -> PredictService:
        service = PredictService(
            self,
            "Predict",
            artifacts_bucket=foundation.buckets.artifacts,
            data_key=foundation.keys.data,
            log_key=foundation.keys.messaging,
            sagemaker_environment=self.endpoint.invoke_environment if self.endpoint else None,
            network=foundation.network,
            capture=foundation.capture,
        )
        if self.endpoint is not None:
            self.endpoint.allow_invoke(service.function)
        return service

    def _outputs(self, auth: ApiAuth) -> None:
        """What a client integration needs besides the API URL (the RestApi's own output). The client secret
        stays in Cognito: `aws cognito-idp describe-user-pool-client` shows it to whoever may see it."""
        CfnOutput(self, "TokenEndpoint", value=f"{auth.domain.base_url()}/oauth2/token")
        CfnOutput(self, "MachineClientId", value=auth.machine_client.user_pool_client_id)
        CfnOutput(self, "UserPoolId", value=auth.user_pool.user_pool_id)
