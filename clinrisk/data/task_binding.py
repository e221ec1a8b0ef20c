"""Which implementation of the task port a task file binds to, and finding a task by name or file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clinrisk.data.generic_task import GenericTask
from clinrisk.data.readmission_task import PLUGINS as READMISSION_PLUGINS
from clinrisk.data.readmission_task import ReadmissionTask
from clinrisk.data.task_port import Task
from clinrisk.settings import DEFAULT_TASK
from clinrisk.taskspec.catalogue import BrokenTaskFile, find_task
from clinrisk.taskspec.spec import LoadedTask, TaskFileError


def task_for(loaded: LoadedTask) -> Task:
    """The implementation a loaded task file binds to: its plugins', or the generic one."""
    plugins = set(loaded.spec.plugins)
    if not plugins:
        return GenericTask(loaded)
    if plugins <= READMISSION_PLUGINS:
        return ReadmissionTask(loaded)
    raise TaskFileError(str(loaded.path), [f"plugins: {', '.join(sorted(plugins))} are bound to no one task"])


def resolve_task(
    name_or_path: str = DEFAULT_TASK,
    directory: Path | None = None,
    *,
    on_broken: Callable[[BrokenTaskFile], None] | None = None,
) -> Task:
    """A task by its name or by its file's path, found as `find_task` finds it (by name in the
    configured task directory, CLINRISK_TASKS_DIR or `tasks/`, as serving does)."""
    return task_for(find_task(name_or_path, directory, on_broken=on_broken))
