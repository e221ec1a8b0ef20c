"""Acknowledge the wildcard *resources* (never actions) of the IAM policies under a construct.

cdk-nag 3 reports AwsSolutions-IAM5 once per wildcard, as `AwsSolutions-IAM5[Resource::<arn>]`,
and CDK matches an acknowledgment to that exact id: a bare "AwsSolutions-IAM5" acknowledges
nothing. The ARN in the id is the policy's resource as cdk-nag flattens it, which for a bucket
of another stack names the CloudFormation export (`clinrisk-dev-foundation:ExportsOutput...`),
known only once the app has resolved its cross-stack references. So the ids are computed then:
a construct validation (run after references are resolved and before the nag packs) reads the
resolved policy documents and acknowledges each wildcard resource it finds, with one reason.

Wildcard actions are never acknowledged here: they stay findings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsii
from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct, IValidation

from cdk_app.compliance import EMPTY_REASONS, MIN_REASON_LENGTH, acknowledge

RULE = "AwsSolutions-IAM5"


def acknowledge_wildcard_resources(construct: IConstruct, reason: str) -> None:
    """Acknowledge, with `reason`, every wildcard resource of the IAM policies in `construct`'s tree."""
    if reason.strip().lower().rstrip(".") in EMPTY_REASONS or len(reason) < MIN_REASON_LENGTH:
        raise ValueError(f"acknowledgment of {RULE} needs a specific reason, got {reason!r}")  # now, not at synth
    construct.node.add_validation(_AcknowledgeWildcardResources(construct, reason))


@jsii.implements(IValidation)
class _AcknowledgeWildcardResources:
    def __init__(self, scope: IConstruct, reason: str) -> None:
        self._scope = scope
        self._reason = reason

    def validate(self) -> list[str]:
        for node in self._scope.node.find_all():
            if isinstance(node, iam.CfnPolicy | iam.CfnManagedPolicy):
                document = Stack.of(node).resolve(node.policy_document)
                for resource in wildcard_resources(document):
                    acknowledge(node, f"{RULE}[Resource::{resource}]", self._reason)
        return []


def wildcard_resources(document: dict[str, Any]) -> list[str]:
    """The resources with a `*` of the Allow statements, flattened as cdk-nag names them."""
    found: dict[str, None] = {}
    for statement in document.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            flat = flatten_reference(resource)
            if "*" in flat:
                found[flat] = None
    return list(found)


def flatten_reference(node: Any) -> str:
    """cdk-nag's `flattenCfnReference`: intrinsic functions as one string (Ref → <Name>, ...)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    for function, flatten in _INTRINSICS.items():
        if isinstance(node, dict) and node.get(function):
            return flatten(node[function])
    return json.dumps(node, separators=(",", ":"))


def _join(arguments: Any) -> str:
    delimiter, items = arguments
    return str(delimiter).join(flatten_reference(item) for item in items)


def _get_att(arguments: Any) -> str:
    resource, attribute = arguments
    return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"


# In cdk-nag's order of precedence.
_INTRINSICS: dict[str, Callable[[Any], str]] = {
    "Fn::Join": _join,
    "Fn::Sub": flatten_reference,
    "Fn::GetAtt": _get_att,
    "Fn::ImportValue": flatten_reference,
    "Ref": lambda value: f"<{flatten_reference(value)}>",
}
