"""What of our own code a Lambda bundle carries: clinrisk and lambdas, without the developer's tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdk_app.bundling import (
    DEVELOPER_ONLY,
    FUNCTION_SPECS,
    BundleBuildError,
    copy_sources,
    developer_only_present,
    function_specs,
)
from clinrisk.taskspec.catalogue import discover_tasks

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_repository_bundles_leave_out_the_local_tools(tmp_path: Path) -> None:
    sources = function_specs(REPO_ROOT)["predict"].source_dirs
    copy_sources(sources, tmp_path)
    assert (tmp_path / "clinrisk" / "serving" / "prediction.py").is_file()
    assert (tmp_path / "lambdas" / "predict" / "handler.py").is_file()
    assert (REPO_ROOT / "clinrisk" / "local" / "cli.py").is_file()
    assert not (tmp_path / "clinrisk" / "local").exists()
    assert not (tmp_path / "cdk_app").exists()
    assert developer_only_present(tmp_path) == []


def test_only_the_local_package_is_left_out_not_modules_named_local(tmp_path: Path) -> None:
    source = tmp_path / "src" / "clinrisk"
    for name in ("local/cli.py", "pipeline/local.py", "batch/local.py"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("")
    copy_sources([source], tmp_path / "bundle")
    copied = sorted(p.relative_to(tmp_path / "bundle").as_posix() for p in (tmp_path / "bundle").rglob("*.py"))
    assert copied == ["clinrisk/batch/local.py", "clinrisk/pipeline/local.py"]


def test_a_bundle_holding_developer_code_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bundle" / DEVELOPER_ONLY[0]).mkdir(parents=True)
    assert developer_only_present(tmp_path / "bundle") == [DEVELOPER_ONLY[0]]
    with pytest.raises(BundleBuildError, match="developer-only code reached the bundle: clinrisk/local"):
        copy_sources([], tmp_path / "bundle")


# Run with -I: the copied sources first, then this interpreter's site-packages (pydantic, PyYAML).
_DISCOVER_TASKS = """
import sys
sys.path.insert(0, sys.argv[1])
from clinrisk.taskspec import catalogue
print(catalogue.__file__)
print(" ".join(sorted(catalogue.discover_tasks())))
"""


@pytest.mark.parametrize("name", sorted(FUNCTION_SPECS))
def test_every_function_carries_the_task_files_where_the_catalogue_finds_them(name: str, tmp_path: Path) -> None:
    """/var/task holds clinrisk/ and tasks/ side by side, as the repository does."""
    copy_sources(function_specs(REPO_ROOT)[name].source_dirs, tmp_path)
    result = subprocess.run(
        [sys.executable, "-I", "-B", "-c", _DISCOVER_TASKS, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    module, names = result.stdout.splitlines()
    assert Path(module).is_relative_to(tmp_path)  # the bundle's copy, not the repository's
    assert names.split() == sorted(discover_tasks()) and "heart-disease" in names.split()
