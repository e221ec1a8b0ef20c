"""Lambda reserved concurrency, as the `reservedConcurrency` setting allows.

Each function asks for its own reservation where it is built (`PythonFunction(reserved_concurrency=...)`),
and a reservation that serialises work says so (`concurrency_is_a_lock`): promote's single instance is
what makes the registry's compare-and-set a lock across overlapping runs. Lambda refuses any
reservation that would leave fewer than 100 of the account's concurrent executions unreserved, and
new accounts may have a quota of 10, so the setting decides which reservations are deployed:

- `all`: every function's own (71 in total, in the synthesis with `vpc`, `sagemaker` serving and
  approvals; the account needs a quota of at least 171);
- `locks` (the default): only the locks (1; a quota of at least 101);
- `none`: nothing (any quota; the promotions of two overlapping runs are then no longer serialised).
"""

from __future__ import annotations

from typing import Literal

import jsii
from aws_cdk import IAspect
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.python_function import PythonFunction

ConcurrencyPolicy = Literal["none", "locks", "all"]
UNRESERVED_MINIMUM = 100  # Lambda keeps this many of the account's concurrent executions unreserved
UNRESERVED_REASON = (
    "The reservedConcurrency setting leaves this function without a reservation, so the app deploys into an"
    " account whose concurrency quota cannot spare one; its Throttles alarm reports contention instead."
)


def required_quota(reserved_total: int) -> int:
    """The account concurrency quota that `reserved_total` reserved executions need to deploy."""
    return reserved_total + UNRESERVED_MINIMUM if reserved_total else 0


def keeps_reservation(policy: ConcurrencyPolicy, *, is_a_lock: bool) -> bool:
    return policy == "all" or (policy == "locks" and is_a_lock)


@jsii.implements(IAspect)
class ReservedConcurrency:
    """Removes the reservations `policy` does not keep, and acknowledges HIPAA's LambdaConcurrency there."""

    def __init__(self, policy: ConcurrencyPolicy) -> None:
        self._policy = policy

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, PythonFunction) or keeps_reservation(
            self._policy, is_a_lock=node.concurrency_is_a_lock
        ):
            return
        cfn_function = node.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.add_property_deletion_override("ReservedConcurrentExecutions")
        acknowledge(node.function, "HIPAA.Security-LambdaConcurrency", UNRESERVED_REASON)
