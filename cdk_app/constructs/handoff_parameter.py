"""A value one stack publishes in SSM Parameter Store for another stack's Lambda to read at run time.

A cross-stack reference would make the reading stack depend on the publishing one, and both
hand-offs here go the other way round (the Pipeline's approval-request Lambda reads the Serving
stack's API URL; the Pipeline's promote Lambda reads the Explain stack's collection endpoint).
"""

from __future__ import annotations

from aws_cdk import aws_ssm as ssm
from constructs import Construct


def handoff_parameter(
    scope: Construct, id: str, *, name: str, value: str, what: str, reader: str
) -> ssm.StringParameter:
    """`what` (the parameter's description) under `name`, read by the `reader` Lambda."""
    return ssm.StringParameter(
        scope, id, parameter_name=name, string_value=value, description=f"{what} (read by the {reader} Lambda)"
    )
