"""Hooks the registry calls with each new champion, in order."""

from __future__ import annotations

import logging
from collections.abc import Callable

from clinrisk.registry.serving_pointer import ServingPointer

logger = logging.getLogger(__name__)
Publisher = Callable[[ServingPointer], None]


def chain_publishers(required: Publisher | None, best_effort: Publisher | None) -> Publisher:
    """`required` (the endpoint deployment) can refuse the promotion by raising; `best_effort` (the
    similar-patient index) cannot: explanations then degrade until the next champion, and the
    failure is logged by type, never with data."""

    def publish(pointer: ServingPointer) -> None:
        if required is not None:
            required(pointer)
        if best_effort is not None:
            try:
                best_effort(pointer)
            except Exception as error:
                logger.error("similar-patient index of version %s not built: %s", pointer.version, type(error).__name__)

    return publish
