"""Tasks a function has a file for but cannot serve, kept out of service one by one at cold start:
a task file that does not load, or a task whose request contract cannot be built, is logged with
its file and the keys at fault and answered 503, while every other task serves (the predict and
explain functions both)."""

from collections.abc import Callable
from typing import TypeVar

from aws_lambda_powertools import Logger

from clinrisk.serving.tasks import ServedTasks

T = TypeVar("T")


def log_unserved(served: ServedTasks, logger: Logger) -> ServedTasks:
    """One error line per task file that did not load: the task, the file and its problems, each led
    by its key (a task file holds declarations, never patient values)."""
    for broken in served.broken:
        logger.error(
            "task file not served",
            extra={"task": broken.name, "file": str(broken.path), "problems": list(broken.problems)},
        )
    return served


def contract_of(name: str, build: Callable[[], T], logger: Logger) -> T | None:
    """The request contract `build` makes for task `name`, or None (logged) when it cannot be made:
    a file can load and still declare a column pydantic cannot take as a field (`model_dump`, `_id`)."""
    try:
        return build()
    except Exception as error:  # any failure takes this task, and only this task, out of service
        logger.error("task contract not built", extra={"task": name, "error": type(error).__name__,
                                                        "detail": str(error)})  # fmt: skip
        return None


def contract_failed(name: str) -> str:
    return f"task {name!r} is unavailable: its request contract could not be built from its task file; see the log"
