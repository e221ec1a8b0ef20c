"""The WAFv2 web ACL in front of the API stage: AWS managed rule groups and a rate limit per IP.

Rules, in order: requests from IP addresses Amazon's threat intelligence lists as malicious; the
core rule set (cross-site scripting, local file inclusion, oversized parts of a request...); known
bad inputs (Log4j, Java deserialization...); and at most `rate_limit` requests per client IP in five
minutes. The core rule set's `SizeRestrictions_BODY` blocks bodies over 8 KB, while a valid request
of 1,000 encounters is about 1.5 MB, so that one rule only counts (the API's own limits still apply:
API Gateway's 10 MB, the handler's 4 MB and the request model's 1,000 encounters).

Every request is logged to a KMS-encrypted log group (WAF requires the `aws-waf-logs-` prefix),
with the Authorization header redacted: it carries the caller's bearer token. WAF logs no bodies.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from cdk_app.constructs.python_function import LOG_RETENTION
from cdk_app.naming import deployment_suffix

# (priority order) AWS managed rule groups; the second item lists rules that only count.
MANAGED_RULE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AWSManagedRulesAmazonIpReputationList", ()),
    ("AWSManagedRulesCommonRuleSet", ("SizeRestrictions_BODY",)),
    ("AWSManagedRulesKnownBadInputsRuleSet", ()),
)
# Requests per client IP per 5 minutes (about 6.7 a second, sustained); each request can carry
# 1,000 encounters, so an integration sending batches stays far below it.
DEFAULT_RATE_LIMIT = 2000
REDACTED_HEADERS = ("authorization",)


class ApiWebAcl(Construct):
    """`web_acl` is associated with `resource_arn` (an API Gateway stage)."""

    web_acl: wafv2.CfnWebACL
    log_group: logs.LogGroup
    association: wafv2.CfnWebACLAssociation

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        resource_arn: str,
        log_key: kms.IKey,
        rate_limit: int = DEFAULT_RATE_LIMIT,
    ) -> None:
        super().__init__(scope, id)
        rules = [
            _managed_rule(group, priority, count_only)
            for priority, (group, count_only) in enumerate(MANAGED_RULE_GROUPS)
        ]
        rules.append(_rate_rule(len(rules), rate_limit))
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope="REGIONAL",
            description="clinrisk API: AWS managed rule groups and a rate limit per client IP",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(name),
            rules=rules,
        )
        self.log_group = self._logging(name, log_key)
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )

    def _logging(self, name: str, log_key: kms.IKey) -> logs.LogGroup:
        # WAF requires the prefix; the suffix lets a destroyed stack's retained group stay beside the next one's.
        log_group_name = f"aws-waf-logs-{name}-{deployment_suffix(self)}"
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name,
            retention=LOG_RETENTION,
            encryption_key=log_key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # WAF wants the log group's ARN without the ":*" that `log_group_arn` ends with.
        destination = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name=log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        config = wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            log_destination_configs=[destination],
            resource_arn=self.web_acl.attr_arn,
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": header})
                for header in REDACTED_HEADERS
            ],
        )
        config.node.add_dependency(log_group)
        return log_group


def _managed_rule(group: str, priority: int, count_only: tuple[str, ...]) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=group,
        priority=priority,
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=group,
                rule_action_overrides=[
                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                    )
                    for rule in count_only
                ]
                or None,
            )
        ),
        visibility_config=_visibility(group),
    )


def _rate_rule(priority: int, limit: int) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name="RateLimitPerIp",
        priority=priority,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=limit, aggregate_key_type="IP", evaluation_window_sec=300
            )
        ),
        visibility_config=_visibility("RateLimitPerIp"),
    )


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    # No sampled requests: the console would show their headers, bearer tokens included; the
    # logs (with the Authorization header redacted) answer the same questions.
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=False
    )
