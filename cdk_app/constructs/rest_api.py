"""The prediction REST API: routes, the Cognito authorizer, request validation, the stage's logs and limits.

Routes (Lambda proxy integrations; the handler routes by path, as `clinrisk serve` does locally):

| route                            | authorization                      | integration                      |
|----------------------------------|------------------------------------|----------------------------------|
| GET /health                      | none (monitors, load balancers)    | predict alias                    |
| GET /v1/model, POST /v1/predict  | Cognito, scope clinrisk/predict    | predict alias                    |
| GET /v1/docs                     | Cognito, scope clinrisk/predict    | predict alias                    |
| GET /v1/tasks                    | Cognito, scope clinrisk/predict    | predict alias                    |
| GET /v1/tasks/{task}/model,      | Cognito, scope clinrisk/predict    | predict alias                    |
| POST /v1/tasks/{task}/predict    |                                    |                                  |
| POST /v1/explain,                | Cognito, scope clinrisk/explain    | explain function                 |
| POST /v1/tasks/{task}/explain    |                                    |                                  |
| GET, POST /v1/approvals/decision | none: an HMAC-signed expiring link | the Pipeline's decision function |

The stage logs every request to an encrypted access log (JSON: ids, caller, statuses, timings; no
body, no query string, no header but the user agent: approval links carry their token in the
query string, and the Authorization header a bearer token) and writes
execution logs at INFO with data tracing off, because data tracing would log request and response
bodies, which hold patient values. Both log groups are created here, KMS-encrypted and kept for a
year; otherwise API Gateway would create the execution log group itself, unencrypted, forever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from clinrisk.serving.prediction import MAX_ENCOUNTERS

STAGE_NAME = "api"
EXPLAIN_PATH = "/v1/explain"
# One resource for every task (the handlers route by task name and answer 404 for an unknown one), so a
# task added to the deployment needs no new API resource.
TASK_PATH = "/v1/tasks/{task}"
TASK_PARAMETER = {"method.request.path.task": True}
APPROVAL_DECISION_PATH = "/v1/approvals/decision"
APPROVAL_LINK_PARAMETERS = ("token", "decision", "expires", "signature")  # clinrisk.registry.approval.DecisionLink
# The CloudWatch Logs actions of the managed policy AmazonAPIGatewayPushToCloudWatchLogs, named.
LOG_WRITE_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
    "logs:PutLogEvents",
)


@dataclass(frozen=True)
class Throttle:
    """Steady requests per second and burst, for the stage and for one method."""

    rate: float
    burst: int


@dataclass(frozen=True)
class ExplainRoute:
    """`POST /v1/explain`: the function that answers it and the scope a token needs."""

    handler: lambda_.IFunction
    scope: str


# The whole stage, and POST /v1/predict on its own (each request may score 1,000 encounters).
STAGE_THROTTLE = Throttle(rate=50, burst=100)
PREDICT_THROTTLE = Throttle(rate=20, burst=40)


class PredictionApi(Construct):
    """`api.deployment_stage` is the stage to associate the web ACL with and to alarm on."""

    api: apigw.RestApi
    stage: apigw.Stage
    authorizer: apigw.CognitoUserPoolsAuthorizer
    access_logs: logs.LogGroup
    execution_logs: logs.LogGroup

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        user_pool: cognito.IUserPool,
        predict_scope: str,
        predict_handler: lambda_.IFunction,
        log_key: kms.IKey,
        approval_decision: lambda_.IFunction | None = None,
        explain: ExplainRoute | None = None,
        set_account_logging_role: bool = True,
    ) -> None:
        super().__init__(scope, id)
        self.access_logs = self._log_group("AccessLogs", log_key, name=None)
        self.api = self._rest_api(name)
        self.stage = self.api.deployment_stage
        self.execution_logs = self._log_group(
            "ExecutionLogs",
            log_key,
            name=Fn.join("", ["API-Gateway-Execution-Logs_", self.api.rest_api_id, f"/{STAGE_NAME}"]),
        )
        if set_account_logging_role:
            self._account_logging_role()
        self.stage.node.add_dependency(self.execution_logs)
        self.authorizer = apigw.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[user_pool], authorizer_name=f"{name}-cognito"
        )
        validator = self.api.add_request_validator(
            "Validator",
            request_validator_name="body-and-parameters",
            validate_request_body=True,
            validate_request_parameters=True,
        )
        self._predict_routes(
            apigw.LambdaIntegration(predict_handler, allow_test_invoke=False), predict_scope, validator
        )
        if approval_decision is not None:
            self._approval_route(approval_decision, validator)
        if explain is not None:
            self._explain_route(explain, validator)
        self._acknowledge()

    # ------------------------------------------------------------------ API and stage

    def _rest_api(self, name: str) -> apigw.RestApi:
        return apigw.RestApi(
            self,
            "Api",
            rest_api_name=name,
            description="clinrisk prediction API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account's logging role is set explicitly below, with named actions.
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=_access_log_format(),
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=STAGE_THROTTLE.rate,
                throttling_burst_limit=STAGE_THROTTLE.burst,
                method_options={
                    "/v1/predict/POST": apigw.MethodDeploymentOptions(
                        throttling_rate_limit=PREDICT_THROTTLE.rate, throttling_burst_limit=PREDICT_THROTTLE.burst
                    )
                },
            ),
        )

    def _log_group(self, id: str, log_key: kms.IKey, *, name: str | None) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            id,
            log_group_name=name,
            retention=LOG_RETENTION,
            encryption_key=log_key,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _account_logging_role(self) -> None:
        """API Gateway writes both logs with the account's CloudWatch role, one setting per account and region
        (AWS::ApiGateway::Account) shared by every REST API there: setting it replaces the role other APIs
        log with. So the role set here may write every log group of the account and region, as the managed
        policy AmazonAPIGatewayPushToCloudWatchLogs would, and the role, its policy and the setting stay when
        this stack is destroyed, so other APIs keep their execution logs. `apiGatewayAccountRole: false`
        leaves the account's existing role alone (context setting; one must be set for execution logs)."""
        role = iam.Role(
            self,
            "CloudWatchRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway's account-wide CloudWatch Logs role: the access and execution logs of every API",
        )
        log_groups = Stack.of(self).format_arn(
            service="logs", resource="log-group", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        policy = iam.ManagedPolicy(
            self,
            "CloudWatchPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(actions=list(LOG_WRITE_ACTIONS), resources=[log_groups]),
                iam.PolicyStatement(actions=["logs:DescribeLogGroups"], resources=[log_groups]),
            ],
        )
        account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=role.role_arn)
        for kept in (role, policy, account):
            kept.apply_removal_policy(RemovalPolicy.RETAIN)
        account.node.add_dependency(policy)
        self.stage.node.add_dependency(account)
        acknowledge_wildcard_resources(
            policy,
            "The role is the account and region's one API Gateway logging role, shared by every REST API there:"
            " limiting it to this API's log groups would stop the execution and access logs of the account's"
            " other APIs, whose log group names are not known here.",
        )

    # ------------------------------------------------------------------ routes

    def _predict_routes(
        self, integration: apigw.LambdaIntegration, predict_scope: str, validator: apigw.RequestValidator
    ) -> None:
        health = self.api.root.add_resource("health").add_method("GET", integration, request_validator=validator)
        _acknowledge_public(
            health,
            "GET /health is the liveness probe of monitors and load balancers; it reads no data and answers"
            ' only {"status": "ok"}.',
        )
        predict = _Authorized(self.authorizer, predict_scope, validator)
        v1 = self.api.root.add_resource("v1")
        for path, http_method in (("model", "GET"), ("docs", "GET")):
            v1.add_resource(path).add_method(http_method, integration, **predict.options())
        v1.add_resource("predict").add_method("POST", integration, **predict.options(self._predict_model()))
        v1.add_resource("tasks").add_method("GET", integration, **predict.options())
        task = self.api.root.resource_for_path(TASK_PATH)
        task.add_resource("model").add_method("GET", integration, **predict.options(parameters=TASK_PARAMETER))
        task_predict = self._task_body_model("TaskPredictRequest", {"encounters": _rows(), "records": _rows()})
        task.add_resource("predict").add_method(
            "POST", integration, **predict.options(task_predict, parameters=TASK_PARAMETER)
        )

    def _predict_model(self) -> apigw.Model:
        """Coarse on purpose: the handler's pydantic models check every field and say which is wrong."""
        return self._body_model("PredictRequest", "encounters", _rows())

    def _task_body_model(self, name: str, options: dict[str, apigw.JsonSchema]) -> apigw.Model:
        """A task's body: readmission's field or a task file's (`clinrisk.serving.task_contract`), one of them."""
        one_of_them = [
            apigw.JsonSchema(required=[field], properties={field: schema}) for field, schema in options.items()
        ]
        return self._object_model(name, any_of=one_of_them)

    def _body_model(self, name: str, field: str, schema: apigw.JsonSchema) -> apigw.Model:
        """A JSON body that must be an object with `field`, itself matching `schema`."""
        return self._object_model(name, required=[field], properties={field: schema})

    def _object_model(self, name: str, **schema: Any) -> apigw.Model:
        """A request model: a JSON object (draft 4, as API Gateway validates) with `schema`'s keywords."""
        return self.api.add_model(
            name,
            content_type="application/json",
            model_name=name,
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4, title=name, type=apigw.JsonSchemaType.OBJECT, **schema
            ),
        )

    def _explain_route(self, route: ExplainRoute, validator: apigw.RequestValidator) -> None:
        # Imported like the approval function: its invoke permission stays in this stack.
        imported = lambda_.Function.from_function_attributes(
            self, "ExplainFunction", function_arn=route.handler.function_arn, same_environment=True
        )
        integration = apigw.LambdaIntegration(imported, allow_test_invoke=False)
        explain = _Authorized(self.authorizer, route.scope, validator)
        self.api.root.resource_for_path(EXPLAIN_PATH).add_method(
            "POST", integration, **explain.options(self._explain_model())
        )
        one = apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT)
        task_explain = self._task_body_model("TaskExplainRequest", {"encounter": one, "record": one})
        self.api.root.resource_for_path(f"{TASK_PATH}/explain").add_method(
            "POST", integration, **explain.options(task_explain, parameters=TASK_PARAMETER)
        )

    def _explain_model(self) -> apigw.Model:
        """One encounter; the handler's pydantic model checks its fields."""
        return self._body_model("ExplainRequest", "encounter", apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT))

    def _approval_route(self, function: lambda_.IFunction, validator: apigw.RequestValidator) -> None:
        # The function lives in another stack; an import in this stack keeps its invoke permission
        # here too, so the Pipeline stack never has to refer back to this API (no dependency cycle).
        imported = lambda_.Function.from_function_attributes(
            self, "ApprovalDecisionFunction", function_arn=function.function_arn, same_environment=True
        )
        integration = apigw.LambdaIntegration(imported, allow_test_invoke=False)
        resource = self.api.root.resource_for_path(APPROVAL_DECISION_PATH)
        parameters = {f"method.request.querystring.{name}": True for name in APPROVAL_LINK_PARAMETERS}
        for http_method in ("GET", "POST"):
            method = resource.add_method(
                http_method, integration, request_parameters=parameters, request_validator=validator
            )
            _acknowledge_public(
                method,
                f"{http_method} {APPROVAL_DECISION_PATH} is opened from an approval e-mail by a person without a"
                " Cognito token; the link's HMAC signature and expiry, checked by the function, are its authorization.",
            )

    def _acknowledge(self) -> None:
        acknowledge(
            self.stage,
            "HIPAA.Security-APIGWCacheEnabledAndEncrypted",
            "Responses are per-patient scores computed from the request body (a POST); a cache would hold patient"
            " data beside the service and never be hit, so the stage has no cache cluster to encrypt.",
        )
        acknowledge(
            self.stage,
            "HIPAA.Security-APIGWSSLEnabled",
            "A client certificate lets an HTTP backend authenticate API Gateway; every integration here is a Lambda"
            " function invoked through IAM, which has no use for one. Clients reach the stage over TLS only.",
        )


@dataclass(frozen=True)
class _Authorized:
    """The options of a method behind the Cognito authorizer with one scope, and the request validator."""

    authorizer: apigw.IAuthorizer
    scope: str
    validator: apigw.IRequestValidator

    def options(self, body: apigw.IModel | None = None, *, parameters: dict[str, bool] | None = None) -> dict[str, Any]:
        return {
            "authorizer": self.authorizer,
            "authorization_type": apigw.AuthorizationType.COGNITO,
            "authorization_scopes": [self.scope],
            "request_validator": self.validator,
            "request_models": {"application/json": body} if body is not None else None,
            "request_parameters": parameters,
        }


def _rows() -> apigw.JsonSchema:
    """1 to MAX_ENCOUNTERS objects: a predict body's rows, whose fields the handler checks."""
    return apigw.JsonSchema(
        type=apigw.JsonSchemaType.ARRAY,
        min_items=1,
        max_items=MAX_ENCOUNTERS,
        items=apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT),
    )


def _acknowledge_public(method: apigw.Method, reason: str) -> None:
    for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
        acknowledge(method, rule, reason)


def _access_log_format() -> apigw.AccessLogFormat:
    """One JSON object per request: who (client id, IP), what (method, resource), outcome and timings."""
    field = apigw.AccessLogField
    return apigw.AccessLogFormat.custom(
        json.dumps(
            {
                "requestId": field.context_request_id(),
                "extendedRequestId": field.context_extended_request_id(),
                "requestTime": field.context_request_time(),
                "ip": field.context_identity_source_ip(),
                "userAgent": field.context_identity_user_agent(),
                "clientId": field.context_authorizer_claims("client_id"),
                "httpMethod": field.context_http_method(),
                "resourcePath": field.context_resource_path(),
                "protocol": field.context_protocol(),
                "status": field.context_status(),
                "responseLength": field.context_response_length(),
                "responseLatency": field.context_response_latency(),
                "integrationStatus": field.context_integration_status(),
                "integrationLatency": field.context_integration_latency(),
                "wafResponseCode": field.context_waf_response_code(),
                "errorType": field.context_error_response_type(),
                "errorMessage": field.context_error_message(),
                "xrayTraceId": field.context_xray_trace_id(),
            }
        )
    )
