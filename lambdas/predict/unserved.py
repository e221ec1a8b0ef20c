"""Tasks a function has a file for but cannot serve, kept out of service one by one at cold start:
a task file that does not load, or a task whose request contract cannot be built, is logged with
its file and the keys at fault and answered 503, while every other task serves (the predict and
explain functions both)."""

from collections.abc import Callable
from typing import TypeVar

from aws_lambda_powertools import Logger

from clinrisk.serving.tasks import ServedTasks
from clinrisk.settings import DEFAULT_TASK
from clinrisk.taskspec.spec import TaskSpec

ContractT = TypeVar("ContractT")
# What this process has logged: `clinrisk serve` imports the predict and explain functions into one
# process, and each would log the same file (in the cloud each function is a process of its own).
_LOGGED: set[tuple[str, str]] = set()


def _first_time(message: str, task: str) -> bool:
    seen = (message, task) in _LOGGED
    _LOGGED.add((message, task))
    return not seen


def log_unserved(served: ServedTasks, logger: Logger) -> ServedTasks:
    """One error line per task file that did not load: the task, the file and its problems, each led
    by its key (a task file holds declarations, never patient values)."""
    for broken in served.broken:
        if not _first_time("task file not served", str(broken.path)):
            continue
        logger.error(
            "task file not served",
            extra={"task": broken.name, "file": str(broken.path), "problems": list(broken.problems)},
        )
    return served


def register_each_task(
    served: ServedTasks,
    contract: Callable[[TaskSpec], ContractT],
    register: Callable[[str, ContractT], None],
    logger: Logger,
) -> ServedTasks:
    """`register` the routes of every served task but readmission (whose routes are its own) with the
    request model `contract` builds from its file. A task whose model cannot be built (a file can
    load and still declare a column pydantic cannot take as a field: `model_dump`, `_id`) is logged
    and taken out of service; the tasks served are returned."""
    for name, spec in served.specs.items():
        if name == DEFAULT_TASK:
            continue
        try:
            model = contract(spec)
        except Exception as error:  # any failure takes this task, and only this task, out of service
            if _first_time("task contract not built", name):
                logger.error("task contract not built", extra={"task": name, "error": type(error).__name__,
                                                                "detail": str(error)})  # fmt: skip
            reason = f"task {name!r} is unavailable: its request contract could not be built from its task file"
            served = served.without(name, reason)
            continue
        register(name, model)
    return served
