"""`ImageFunctions`: what every function run from the monitoring image is built with (the monitor, the
outcome intake, the alarm notices): the image's build context, the data key, the log key and, in the VPC
variant, the network. One object, so each construct names only what is its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from constructs import Construct

from cdk_app.constructs.python_function import FunctionNetwork, PythonFunction


@dataclass(frozen=True, kw_only=True)
class FunctionSizing:
    """A function's memory, timeout and reserved concurrency."""

    memory_size: int
    timeout: Duration
    reserved_concurrency: int


@dataclass(frozen=True, kw_only=True)
class ImageFunctions:
    image: Path
    data_key: kms.IKey
    log_key: kms.IKey
    network: FunctionNetwork | None = None

    def function(
        self,
        scope: Construct,
        *,
        handler: str,
        description: str,
        environment: Mapping[str, str],
        sizing: FunctionSizing,
    ) -> PythonFunction:
        """The function `Function` in `scope`, running `handler` from the image."""
        return PythonFunction(
            scope,
            "Function",
            image=self.image,
            handler=handler,
            description=description,
            data_key=self.data_key,
            log_key=self.log_key,
            environment=environment,
            memory_size=sizing.memory_size,
            timeout=sizing.timeout,
            reserved_concurrency=sizing.reserved_concurrency,
            network=self.network,
        )


class RuleDrivenFunction(Construct):
    """A construct whose `function` an EventBridge `rule` runs (the monitor's schedule, the alarm notices' state
    changes); an event the rule cannot deliver after its retries goes to the function's dead-letter queue."""

    function: PythonFunction
    rule: events.Rule

    def _run_on(self, rule: events.Rule, *, retry_attempts: int, max_event_age: Duration | None = None) -> None:
        self.rule = rule
        rule.add_target(
            targets.LambdaFunction(
                self.function.function,
                retry_attempts=retry_attempts,
                max_event_age=max_event_age,
                dead_letter_queue=self.function.dead_letters,
            )
        )
