"""The task files of a directory (the repository's `tasks/`), by task name, and the task files that
ship inside a task package (readmission's, `clinrisk/tasks/readmission/task.yaml`): those travel
with the code into every Lambda bundle and the training source, so readmission resolves wherever
its code runs."""

from __future__ import annotations

from pathlib import Path

import clinrisk.tasks
from clinrisk.taskspec.spec import LoadedTask, TaskFileError, load_task

# The repository's task directory; bundling it into Lambdas and the training source is a later step.
TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"
TASK_FILE_SUFFIXES = (".yaml", ".yml")
PACKAGED_TASK_FILES: tuple[Path, ...] = (Path(clinrisk.tasks.__file__).resolve().parent / "readmission" / "task.yaml",)


def discover_tasks(directory: Path = TASKS_DIR) -> dict[str, LoadedTask]:
    """Every task file in `directory` and every packaged one, by name. Problems in all files are
    reported together, a name used twice among them too."""
    found = directory.iterdir() if directory.is_dir() else iter(())
    files = [*PACKAGED_TASK_FILES, *sorted(p for p in found if p.suffix in TASK_FILE_SUFFIXES and p.is_file())]
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
    """A task by its name in `directory` (or packaged), or a task file by its path. A file whose task
    name is already another file's is refused: runs, registered models and serving pointers are
    keyed by the name, so two files under one name would mix two tasks."""
    path = Path(name_or_path)
    tasks = discover_tasks(directory)
    if path.suffix in TASK_FILE_SUFFIXES:
        task = load_task(path)
        known = tasks.get(task.spec.name)
        if known is not None and known.sha256 != task.sha256:
            raise TaskFileError(
                str(path), [f"name: task name {task.spec.name!r} is already used by {known.path}; choose another name"]
            )
        return task
    if name_or_path not in tasks:
        names = ", ".join(sorted(tasks)) or "none"
        raise TaskFileError(str(directory), [f"no task named {name_or_path!r} (tasks: {names})"])
    return tasks[name_or_path]
