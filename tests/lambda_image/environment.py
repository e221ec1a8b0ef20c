"""The monitoring image's Python environment, built on this machine for tests/lambda_image: a CPython
3.12 venv (the Python of the image's base, public.ecr.aws/lambda/python:3.12) holding exactly the
packages of lambdas/monitoring_image/requirements.lock, the file the Dockerfile installs.

Built once per lock into build/image/monitoring-<hash> (the hash covers the lock and the
interpreter's version) under a file lock, so parallel pytest workers share one build; `make
image-env` builds it, and the tests' fixture does too (pip needs a package index the first time).
CPython 3.12 is $CLINRISK_LAMBDA_IMAGE_PYTHON if set, otherwise found on PATH or in pyenv's
versions; without it the build fails, naming what to install.
"""

from __future__ import annotations

import os
import re
import sys
from functools import partial
from pathlib import Path

from cdk_app.bundling import find_interpreter
from cdk_app.monitoring_image import DOCKERFILE, LOCK_FILE, REPO_ROOT
from tests.venv_builder import ImageEnvironmentError, build_key, built_once, python_version, run

BUILD_DIR = REPO_ROOT / "build" / "image"
PYTHON_OVERRIDE = "CLINRISK_LAMBDA_IMAGE_PYTHON"
BASE_IMAGE = re.compile(r"^FROM\s+public\.ecr\.aws/lambda/python:(?P<version>3\.\d+)\s*$", re.MULTILINE)


def image_python_version(dockerfile: Path = DOCKERFILE) -> str:
    """The Python of the Dockerfile's base image ("3.12"), from its FROM line."""
    found = BASE_IMAGE.search(dockerfile.read_text())
    if found is None:
        raise ImageEnvironmentError(f"{dockerfile}: no `FROM public.ecr.aws/lambda/python:3.X` line")
    return found["version"]


def image_python() -> Path:
    version = image_python_version()
    override = os.environ.get(PYTHON_OVERRIDE)
    found = Path(override) if override else find_interpreter(version)
    if found is None or not found.exists():
        raise ImageEnvironmentError(
            f"the monitoring image runs CPython {version} and none was found (PATH, pyenv's versions,"
            f" ${PYTHON_OVERRIDE}); install it, e.g. `pyenv install {version}`."
        )
    return found


def _key(interpreter: Path) -> str:
    return build_key(LOCK_FILE.read_bytes() + python_version(interpreter).encode())


def image_environment(build_dir: Path = BUILD_DIR) -> Path:
    """The venv directory, built if this lock has not been built yet."""
    interpreter = image_python()
    return built_once(
        build_dir, "monitoring", _key(interpreter), stamp=LOCK_FILE.read_text(), build=partial(_build, interpreter)
    )


def _build(interpreter: Path, target: Path) -> None:
    run([str(interpreter), "-m", "venv", str(target)])
    python = str(target / "bin" / "python")
    # As the Dockerfile does: the whole lock, no dependency resolution.
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
         "-r", str(LOCK_FILE)])  # fmt: skip
    run([python, "-m", "pip", "check"])  # the lock is complete


if __name__ == "__main__":
    try:
        sys.stdout.write(f"{image_environment()}\n")
    except ImageEnvironmentError as error:
        sys.exit(f"make image-env: {error}")
