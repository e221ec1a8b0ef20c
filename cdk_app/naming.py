"""Names that must differ between one deployment of a stack and the next.

A log group kept on `cdk destroy` (RemovalPolicy.RETAIN, so audit logs outlive the stack) still
holds its name: a fixed name would make the next `cdk deploy` of the same stack fail with
"... already exists". Where AWS lets the name be generated, it is; where a service dictates the
name's shape (WAF's `aws-waf-logs-` prefix, Step Functions' vended-logs prefix, the
`/aws/sagemaker/Endpoints/<endpoint>` group SageMaker writes to), the name ends with
`deployment_suffix`: the first block of the stack's own id, which CloudFormation makes anew each
time the stack is created and keeps through every update.
"""

from __future__ import annotations

import re
from typing import TypedDict

from aws_cdk import Fn, Stack
from constructs import Construct


def deployment_suffix(scope: Construct) -> str:
    """8 hex characters, fixed for the life of the stack, new after a destroy and deploy.

    AWS::StackId is arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>."""
    stack_uuid = Fn.select(2, Fn.split("/", Stack.of(scope).stack_id))
    return Fn.select(0, Fn.split("-", stack_uuid))


class StackNaming(TypedDict):
    stack_name: str
    description: str


def stack_naming(env_name: str, id: str, description: str) -> StackNaming:
    """A stack's `stack_name`, `clinrisk-<env>-<id in kebab case>`, and its `description`, `clinrisk: <description>`."""
    kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", id).lower()
    return StackNaming(stack_name=f"clinrisk-{env_name}-{kebab}", description=f"clinrisk: {description}")
