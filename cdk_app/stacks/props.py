"""`ClinriskProps`: what every stack after Foundation builds on, made once by the app (`cdk_app.app`).

The app's config, the Foundation stack (keys, buckets, topics, network) and the names derived from
the environment, so a stack's signature names only the stacks it needs beyond these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from cdk_app.config import ClinriskConfig
from cdk_app.constructs.logged_state_machine import MachineSpec
from cdk_app.constructs.network import PrivateNetwork
from cdk_app.naming import StackNaming, stack_naming
from cdk_app.stacks.foundation import FoundationStack


class FunctionWiring(TypedDict):
    """What the pipeline and batch-scoring functions are wired to: the Foundation's data and artifacts buckets,
    its data key and messaging (log) key, and its network in the VPC variant."""

    data: s3.IBucket
    artifacts: s3.IBucket
    data_key: kms.IKey
    messaging_key: kms.IKey
    network: PrivateNetwork | None


@dataclass(frozen=True, kw_only=True)
class ClinriskProps:
    """The shared props of the stacks after Foundation (see the module docstring)."""

    config: ClinriskConfig
    foundation: FoundationStack

    @property
    def name(self) -> str:
        """`clinrisk-<env>`: the prefix of every named resource."""
        return f"clinrisk-{self.config.env}"

    def naming(self, id: str, description: str) -> StackNaming:
        """The stack name and description of the stack `id` (`cdk_app.naming.stack_naming`)."""
        return stack_naming(self.config.env, id, description)

    @property
    def function_wiring(self) -> FunctionWiring:
        buckets, keys = self.foundation.buckets, self.foundation.keys
        return FunctionWiring(
            data=buckets.data,
            artifacts=buckets.artifacts,
            data_key=keys.data,
            messaging_key=keys.messaging,
            network=self.foundation.network,
        )

    def machine(
        self, name: str, substitutions: Mapping[str, str], functions: Sequence[lambda_.IFunction]
    ) -> MachineSpec:
        """A state machine alarming to the alerts topic, with the Foundation's keys."""
        keys = self.foundation.keys
        return MachineSpec(
            name=name,
            substitutions=substitutions,
            functions=functions,
            alerts=self.foundation.topics.alerts,
            messaging_key=keys.messaging,
            data_key=keys.data,
        )
