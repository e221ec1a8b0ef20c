"""The two findings every single-purpose role of the pipeline shares, acknowledged in one place.

- `AwsSolutions-IAM5` per wildcard *resource* (cdk-nag names each one; wildcard actions are never
  acknowledged and stay findings), with the reason the caller gives for that role;
- `HIPAA.Security-IAMNoInlinePolicy`: each role's policy is its own, made and deleted with it.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from cdk_app.compliance import acknowledge
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources

INLINE_POLICY_REASON = (
    "The policy belongs to this one role and is created, changed and deleted with it by CloudFormation;"
    " a managed policy would be a second resource with the same lifetime and no reuse."
)


def acknowledge_role_findings(role: iam.IRole, *, wildcard_reason: str) -> None:
    acknowledge_wildcard_resources(role, wildcard_reason)
    acknowledge(role, "HIPAA.Security-IAMNoInlinePolicy", INLINE_POLICY_REASON)
