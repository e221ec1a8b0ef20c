"""What every stage Lambda shares: Powertools (created once per process), the ports (built once
per cold start) and the one place where an exception becomes a Step Functions error name.

A stage handler is a few lines:

    @stage_handler(stages.SomeInput)
    def handler(request: stages.SomeInput, context: LambdaContext) -> dict[str, Any]:
        output = stages.some_stage(request, ports=runtime().ports)
        return output.model_dump(mode="json")

Logs name the event's fields, never their values: events carry paths and ids, and a value
that is not ours to log must not reach CloudWatch by accident.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from clinrisk.errors import ClinriskError
from clinrisk.pipeline.contracts import Ports
from clinrisk.runtime import build_ports
from clinrisk.settings import Settings

SERVICE = "clinrisk"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
# Powertools takes the namespace from POWERTOOLS_METRICS_NAMESPACE; without one it would fail
# while flushing, after the stage's work is done, so fall back to the service name.
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", SERVICE))

# Pydantic messages of these types come from validators and may quote the input.
_TYPES_WITHOUT_MESSAGE = frozenset({"value_error", "assertion_error"})

ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")


class BadEventError(ClinriskError):
    """The event does not fit the stage's input model; nothing was done. Step Functions catches
    it by this name. The message names each invalid field and what is wrong, never its value."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields

    def __reduce__(self) -> tuple[type[BadEventError], tuple[str, tuple[str, ...]]]:
        return (type(self), (str(self), self.fields))

    @classmethod
    def from_validation(cls, model: type[BaseModel], error: ValidationError) -> BadEventError:
        problems: list[str] = []
        fields: list[str] = []
        for item in error.errors(include_url=False, include_input=False, include_context=False):
            field = ".".join(str(part) for part in item["loc"]) or "(event)"
            reason = item["type"] if item["type"] in _TYPES_WITHOUT_MESSAGE else item["msg"]
            problems.append(f"{field}: {reason}")
            fields.append(field)
        return cls(f"invalid {model.__name__} event: {'; '.join(problems)}", tuple(dict.fromkeys(fields)))


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    ports: Ports


@functools.cache
def runtime() -> Runtime:
    """Settings from the environment and the ports they pick, built on the first call of a cold
    start and reused by every later invocation of the same process."""
    settings = Settings()
    return Runtime(settings=settings, ports=build_ports(settings))


def _field_names(event: Any) -> list[str]:
    return sorted(str(key) for key in event) if isinstance(event, dict) else [f"({type(event).__name__})"]


def stage_handler(
    model: type[ModelT],
) -> Callable[[Callable[[ModelT, LambdaContext], ResultT]], Callable[..., ResultT]]:
    """The stage as a Lambda handler, with Powertools' logger context, tracer and metrics around it.
    Parse the event into `model` with the Powertools parser, call the stage, and map errors:

    - an event that does not fit `model` → `BadEventError` naming the fields, before any work;
    - a `ClinriskError` → re-raised as is: its class name is the Step Functions error name;
    - anything else → re-raised as is (Step Functions sees its class name), logged by type only.
    """

    def decorate(stage: Callable[[ModelT, LambdaContext], ResultT]) -> Callable[..., ResultT]:
        @functools.wraps(stage)
        def handle(event: Any, context: LambdaContext) -> ResultT:
            logger.info("event received", extra={"input_model": model.__name__, "event_fields": _field_names(event)})
            try:
                request = parse(event=event, model=model)
            except ValidationError as error:
                bad = BadEventError.from_validation(model, error)
                logger.warning("bad event", extra={"error": type(bad).__name__, "invalid_fields": list(bad.fields)})
                # `from None`: the pydantic error quotes the input, and a chained cause is logged.
                raise bad from None
            try:
                return stage(request, context)
            except ClinriskError as error:
                # ClinriskError messages name files, keys and counts, never data values.
                logger.error("stage failed", extra={"error": type(error).__name__, "detail": str(error)})
                raise
            except Exception as error:
                logger.error("stage failed unexpectedly", extra={"error": type(error).__name__})
                raise

        traced = logger.inject_lambda_context(log_event=False)(
            tracer.capture_lambda_handler(metrics.log_metrics(handle))
        )
        return cast(Callable[..., ResultT], traced)

    return decorate
