"""The task files of a directory (the repository's `tasks/`), by task name."""

from __future__ import annotations

from pathlib import Path

from clinrisk.taskspec.spec import LoadedTask, TaskFileError, load_task

# `tasks/` beside the `clinrisk` package: the repository's, and the copy every bundle carries in the
# same place (cdk_app.bundling: /var/task/tasks in a Lambda; cdk_app.constructs.training_source:
# /opt/ml/code/tasks in a SageMaker job or endpoint, and site-packages/tasks once the toolkit installed it).
TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"
TASK_FILE_SUFFIXES = (".yaml", ".yml")


def discover_tasks(directory: Path = TASKS_DIR) -> dict[str, LoadedTask]:
    """Every task file in `directory`, by name. Problems in all files are reported together."""
    files = sorted(path for path in directory.iterdir() if path.suffix in TASK_FILE_SUFFIXES and path.is_file())
    tasks: dict[str, LoadedTask] = {}
    problems: list[str] = []
    for path in files:
        try:
            task = load_task(path)
        except TaskFileError as error:
            problems += [f"{path.name}: {problem}" for problem in error.problems]
            continue
        first = tasks.get(task.spec.name)
        if first is not None:
            problems.append(f"task name {task.spec.name!r} is used by both {first.path.name} and {path.name}")
            continue
        tasks[task.spec.name] = task
    if problems:
        raise TaskFileError(str(directory), problems)
    return tasks


def find_task(name_or_path: str, directory: Path = TASKS_DIR) -> LoadedTask:
    """A task by its name in `directory`, or a task file by its path."""
    path = Path(name_or_path)
    if path.suffix in TASK_FILE_SUFFIXES:
        return load_task(path)
    tasks = discover_tasks(directory)
    if name_or_path not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise TaskFileError(str(directory), [f"no task named {name_or_path!r} (tasks: {known})"])
    return tasks[name_or_path]
