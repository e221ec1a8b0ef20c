"""`--task NAME` on the command line resolves a name as serving does: in `CLINRISK_TASKS_DIR` (the
repository's `tasks/` when unset), one file judged at a time. A broken file fails only a command
that names its task (one line, exit 2, the file and the key), and every other command warns about it
on stderr in one line that quotes nothing the file holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from clinrisk.local.cli import app
from clinrisk.taskspec.catalogue import TASKS_DIR
from tests.heart_synthetic import heart_frame, write_site_file

pytestmark = pytest.mark.integration
runner = CliRunner()
BAD_THRESHOLD = "> banana"  # what the broken file holds at its bad key: never echoed


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tasks directory outside the repository: a drafted task `my-heart` (heart disease's file
    under another name), and `sepsis`, whose target threshold is not one."""
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    directory = tmp_path / "tasks"
    directory.mkdir()
    document = yaml.safe_load((TASKS_DIR / "heart-disease.yaml").read_text())
    (directory / "my-heart.yaml").write_text(yaml.safe_dump({**document, "name": "my-heart"}))
    sepsis = {**document, "name": "sepsis", "target": {**document["target"], "positive_if": BAD_THRESHOLD}}
    (directory / "sepsis.yaml").write_text(yaml.safe_dump(sepsis))
    monkeypatch.setenv("CLINRISK_TASKS_DIR", str(directory))
    return directory


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def data(tmp_path: Path) -> str:
    return str(write_site_file(tmp_path / "processed.cleveland.data", heart_frame()))


def warned_once_about_sepsis(result: Result) -> None:
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "sepsis.yaml" in warnings[0] and "target.positive_if" in warnings[0], warnings
    assert BAD_THRESHOLD not in result.output


def test_a_task_of_clinrisk_tasks_dir_resolves_by_name_in_every_command(tasks: Path, tmp_path: Path) -> None:
    validated = run("task", "validate", "my-heart", data(tmp_path))
    assert validated.exit_code == 0, validated.output
    assert "120 rows: no problems" in validated.output
    warned_once_about_sepsis(validated)
    for command in (("models", "list"), ("models", "history"), ("rag", "index-champion")):
        result = run(*command, "--task", "my-heart")
        assert "no task named" not in result.output, (command, result.output)
        warned_once_about_sepsis(result)
    # No champion yet: the score command found the task, and says what it lacks.
    scored = run("score", data(tmp_path), "-o", str(tmp_path / "out.csv"), "--task", "my-heart")
    assert scored.exit_code != 0 and "no task named" not in scored.output and "my-heart" in scored.output


def test_a_task_file_path_still_resolves(tasks: Path, tmp_path: Path) -> None:
    result = run("task", "validate", str(tasks / "my-heart.yaml"), data(tmp_path))
    assert result.exit_code == 0, result.output
    warned_once_about_sepsis(result)


def test_pipeline_run_is_stopped_by_its_own_task_only(tasks: Path, tmp_path: Path) -> None:
    """The run gets past the broken sepsis file to validating its data, which stops it on its own
    problem (a code outside the declared ones), not on the other file's."""
    frame = heart_frame()
    frame.loc[0, "cp"] = 9.0
    path = write_site_file(tmp_path / "processed.cleveland.data", frame)
    result = run("pipeline", "run", "--task", "my-heart", "--data", str(path))
    assert result.exit_code == 2, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert "unknown_code: 'cp'" in error and "sepsis" not in error, result.output
    warned_once_about_sepsis(result)


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(("✗", "✓"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [("task", "validate", "sepsis", "{data}"), ("pipeline", "run", "--task", "sepsis", "--data", "{data}"),
     ("score", "{data}", "-o", "{out}", "--task", "sepsis"), ("models", "history", "--task", "sepsis")],
    ids=["task validate", "pipeline run", "score", "models history"],
)  # fmt: skip
def test_a_broken_task_named_is_one_line_with_its_file_and_key(
    tasks: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    args = [arg.format(data=data(tmp_path), out=tmp_path / "out.csv") for arg in command]
    line = _one_error_line(run(*args))
    assert str(tasks / "sepsis.yaml") in line and "target.positive_if" in line, line
    assert "no task named" not in line


@pytest.mark.parametrize("same_text", [False, True], ids=["another draft", "an identical copy"])
def test_two_files_of_the_tasks_dir_with_one_name_are_refused_naming_both(
    tasks: Path, tmp_path: Path, same_text: bool
) -> None:
    """Serving refuses a name two files of its directory declare; so does every command, by name
    and by either file's path, whether the two files differ or not."""
    document = yaml.safe_load((tasks / "my-heart.yaml").read_text())
    copy = document if same_text else {**document, "description": "another draft"}
    (tasks / "my-heart-copy.yaml").write_text(yaml.safe_dump(copy))
    for task in ("my-heart", str(tasks / "my-heart.yaml"), str(tasks / "my-heart-copy.yaml")):
        line = _one_error_line(run("task", "validate", task, data(tmp_path)))
        assert "name: task name 'my-heart'" in line, line
        assert "my-heart.yaml" in line and "my-heart-copy.yaml" in line, line
