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

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from cdk_app.bundling import find_interpreter
from cdk_app.monitoring_image import DOCKERFILE, LOCK_FILE, REPO_ROOT

BUILD_DIR = REPO_ROOT / "build" / "image"
PYTHON_OVERRIDE = "CLINRISK_LAMBDA_IMAGE_PYTHON"
_STAMP = ".clinrisk-image-env"
_TIMEOUT_SECONDS = 1800
BASE_IMAGE = re.compile(r"^FROM\s+public\.ecr\.aws/lambda/python:(?P<version>3\.\d+)\s*$", re.MULTILINE)


class ImageEnvironmentError(RuntimeError):
    """The image's environment cannot be built here."""


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


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise ImageEnvironmentError(f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def _key(interpreter: Path) -> str:
    version = _run([str(interpreter), "-c", "import sys; print(sys.version)"]).strip()
    return hashlib.sha256(LOCK_FILE.read_bytes() + version.encode()).hexdigest()[:16]


def image_environment(build_dir: Path = BUILD_DIR) -> Path:
    """The venv directory, built if this lock has not been built yet."""
    interpreter = image_python()
    target = build_dir / f"monitoring-{_key(interpreter)}"
    build_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir / ".monitoring.lock")):
        if not (target / _STAMP).is_file():
            shutil.rmtree(target, ignore_errors=True)
            _run([str(interpreter), "-m", "venv", str(target)])
            python = str(target / "bin" / "python")
            # As the Dockerfile does: the whole lock, no dependency resolution.
            _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                  "-r", str(LOCK_FILE)])  # fmt: skip
            _run([python, "-m", "pip", "check"])  # the lock is complete
            (target / _STAMP).write_text(LOCK_FILE.read_text())
            for stale in build_dir.glob("monitoring-*"):  # earlier locks' builds
                if stale != target:
                    shutil.rmtree(stale, ignore_errors=True)
    return target


if __name__ == "__main__":
    try:
        sys.stdout.write(f"{image_environment()}\n")
    except ImageEnvironmentError as error:
        sys.exit(f"make image-env: {error}")
