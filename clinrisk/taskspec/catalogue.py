"""The task files of a directory (the repository's `tasks/`), by task name, and the task files that
ship inside a task package (readmission's, `clinrisk/tasks/readmission/task.yaml`): those travel
with the code into every Lambda bundle and the training source, so readmission resolves wherever
its code runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

import clinrisk.tasks
from clinrisk.settings import Settings
from clinrisk.taskspec.spec import TASK_NAME, LoadedTask, TaskFileError, load_task, read_yaml

# `tasks/` beside the `clinrisk` package: the repository's, and the copy every bundle carries in the
# same place (cdk_app.bundling: /var/task/tasks in a Lambda; cdk_app.constructs.training_source:
# /opt/ml/code/tasks in a SageMaker job or endpoint, and site-packages/tasks once the toolkit installed it).
TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"
TASK_FILE_SUFFIXES = (".yaml", ".yml")
PACKAGED_TASK_FILES: tuple[Path, ...] = (Path(clinrisk.tasks.__file__).resolve().parent / "readmission" / "task.yaml",)


@dataclass(frozen=True)
class BrokenTaskFile:
    """A task file that cannot be used: the task it stands for (the name it declares, or its file's
    stem when it declares none that can be read), its path, and its problems, one line each, each
    led by its key in the file (`target.column: ...`, `line 3: not valid YAML`)."""

    name: str
    path: Path
    problems: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        """The keys (or lines) the problems are at: what a response may say without quoting the file."""
        return list(dict.fromkeys(problem.partition(": ")[0] for problem in self.problems))

    def unavailable(self) -> str:
        """Why its task cannot be used, naming the file and the keys at fault (never what they hold)."""
        return f"task {self.name!r} is unavailable: its task file {self.path.name} is invalid at {', '.join(self.keys)}"


@dataclass(frozen=True)
class Survey:
    """Every task file of a directory, each judged on its own: the tasks that load, by name, and the
    broken files. A name two files of the directory declare is no task: neither file is used.
    `claimants` holds every file that loads, by the name it declares."""

    directory: Path
    tasks: dict[str, LoadedTask]
    broken: list[BrokenTaskFile]
    claimants: dict[str, list[LoadedTask]]

    def problems(self) -> list[str]:
        """One line per problem, led by its file's name (what `discover_tasks` reports)."""
        return [f"{broken.path.name}: {problem}" for broken in self.broken for problem in broken.problems]

    def task(self, name: str) -> LoadedTask:
        """The task named `name`; a broken file of that name is refused with its own problems."""
        if name in self.tasks:
            return self.tasks[name]
        broken = next((broken for broken in self.broken if broken.name == name), None)
        if broken is not None:
            raise TaskFileError(str(broken.path), list(broken.problems))
        names = ", ".join(sorted(self.tasks)) or "none"
        raise TaskFileError(str(self.directory), [f"no task named {name!r} (tasks: {names})"])


def survey_tasks(directory: Path = TASKS_DIR) -> Survey:
    """Every packaged task file and every task file in `directory`, each loaded on its own, so that
    one bad file never stops the others (serving keeps the good tasks up)."""
    found = directory.iterdir() if directory.is_dir() else iter(())
    files = [*PACKAGED_TASK_FILES, *sorted(p for p in found if p.suffix in TASK_FILE_SUFFIXES and p.is_file())]
    loaded: dict[str, list[LoadedTask]] = {}
    broken: list[BrokenTaskFile] = []
    for path in files:
        try:
            task = load_task(path)
        except TaskFileError as error:
            broken.append(BrokenTaskFile(_declared_name(path), path, tuple(error.problems)))
            continue
        loaded.setdefault(task.spec.name, []).append(task)
    tasks: dict[str, LoadedTask] = {}
    for name, claimants in loaded.items():
        first, *others = claimants
        # A packaged file is the code's own task: a file of the directory cannot take its name.
        if others and first.path not in PACKAGED_TASK_FILES:
            others = claimants
        else:
            tasks[name] = first
        broken += [
            BrokenTaskFile(
                name, task.path, (f"name: task name {name!r} is also declared by {_other(task, claimants)}",)
            )
            for task in others
        ]
    return Survey(directory, tasks, broken, loaded)


def _other(task: LoadedTask, claimants: list[LoadedTask]) -> str:
    return next(other.path.name for other in claimants if other is not task)


def _declared_name(path: Path) -> str:
    """The name a file that does not load declares, when it is a task name; else its file's stem."""
    try:
        document = read_yaml(path.read_bytes())
    except (OSError, yaml.YAMLError):
        document = None
    name = document.get("name") if isinstance(document, dict) else None
    return name if isinstance(name, str) and TASK_NAME.fullmatch(name) else path.stem


def configured_tasks_dir(settings: Settings | None = None) -> Path:
    """The task directory this deployment knows: `settings.tasks_dir` (CLINRISK_TASKS_DIR), else
    `tasks/`. Serving, batch scoring and every command's `--task` read this one."""
    return (settings or Settings()).tasks_dir or TASKS_DIR


def discover_tasks(directory: Path = TASKS_DIR) -> dict[str, LoadedTask]:
    """Every task file in `directory` and every packaged one, by name. Problems in all files are
    reported together, a name used twice among them too."""
    survey = survey_tasks(directory)
    if survey.broken:
        raise TaskFileError(str(directory), survey.problems())
    return survey.tasks


def find_task(
    name_or_path: str,
    directory: Path | None = None,
    *,
    on_broken: Callable[[BrokenTaskFile], None] | None = None,
) -> LoadedTask:
    """A task by its name in `directory` (`configured_tasks_dir()` when None) or packaged, or a task
    file by its path. Only the task asked for must be sound: a broken file of that name is refused
    with its problems, and every other broken file is passed to `on_broken` (a command warns).
    A file whose task name another file of the directory declares is refused: runs, registered
    models and serving pointers are keyed by the name, so two files under one name would mix two tasks."""
    survey = survey_tasks(directory or configured_tasks_dir())
    path = Path(name_or_path)
    if path.suffix in TASK_FILE_SUFFIXES:
        task = load_task(path)
        name = task.spec.name
        others = [known for known in survey.claimants.get(name, []) if known.path.resolve() != path.resolve()]
        # Another file's name is refused unless it is the served task's file copied (same bytes);
        # a name two files of the directory declare is no task's, whatever they hold.
        if others and (name not in survey.tasks or any(known.sha256 != task.sha256 for known in others)):
            used_by = " and ".join(str(other.path) for other in others)
            problem = f"name: task name {name!r} is already used by {used_by}; choose another name"
            raise TaskFileError(str(path), [problem])
    else:
        task = survey.task(name_or_path)
    if on_broken is not None:
        for broken in survey.broken:
            on_broken(broken)
    return task
