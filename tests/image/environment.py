"""The Python environment of the SageMaker XGBoost 3.0-5 image, built on this machine for the
image-emulation tests (tests/image): a CPython 3.10 venv holding the packages of
`xgboost-3.0-5.lock` at the image's versions, with the image's own patches applied.

It is built once per lock (like the Lambda bundles): `build/image/xgboost-3.0-5-<hash>`, the hash
covering the lock, the patches and the interpreter's version, under a file lock so that parallel
pytest workers share one build. `make image-env` builds it; the tests' fixture builds it too, so
`make test` on a fresh clone needs nothing else (pip needs a package index the first time).

CPython 3.10 is `$CLINRISK_IMAGE_PYTHON` if set, otherwise found on PATH or in pyenv's versions
(`PYENV_VERSION=3.10.13 python3.10`). Without it the build fails, naming what to install: the
image's Python is part of what these tests check, so no other version stands in for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cdk_app.bundling import find_interpreter
from tests.venv_builder import ImageEnvironmentError, build_key, built_once, python_version, run

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = Path(__file__).with_name("xgboost-3.0-5.lock")
BUILD_DIR = REPO_ROOT / "build" / "image"
IMAGE_PYTHON = "3.10"
PYTHON_OVERRIDE = "CLINRISK_IMAGE_PYTHON"
BUILD_TOOLS = ("pip", "setuptools", "wheel")
# Requirements the lock leaves out on purpose (see its header); `pip check` may name only these.
LEFT_OUT = frozenset({"typing", "nvidia-nccl-cu12"})


@dataclass(frozen=True)
class Patch:
    """A text replacement the image's Dockerfile makes in an installed file."""

    path: str  # relative to site-packages
    old: str
    new: str
    source: str


# aws/sagemaker-xgboost-container docker/3.0-5/final/Dockerfile.cpu (43785110, unchanged at cb8df91):
#   RUN sed -i 's/collections\.Mapping/collections.abc.Mapping/g' .../sagemaker_containers/_mapping.py
# Its other steps touch no package installed here: the sagemaker_inference decoder.py copy (not
# installed: multi-model server), the protobuf pin (in the lock), removing numpy-1.21.2.dist-info
# (not present), PyYAML (not installed), `pip uninstall typing` (not in the lock) and the image's
# own wheel (not on PyPI: its script-mode branch is reproduced in image_toolkit.py).
PATCHES = (
    Patch(
        path="sagemaker_containers/_mapping.py",
        old="collections.Mapping",
        new="collections.abc.Mapping",
        source="docker/3.0-5/final/Dockerfile.cpu: sed collections.Mapping -> collections.abc.Mapping",
    ),
)


def image_python() -> Path:
    """CPython 3.10; raises with how to get it when there is none."""
    override = os.environ.get(PYTHON_OVERRIDE)
    found = Path(override) if override else find_interpreter(IMAGE_PYTHON)
    if found is None or not found.exists():
        where = f"${PYTHON_OVERRIDE}={override}" if override else "PATH and pyenv's versions"
        raise ImageEnvironmentError(
            f"the SageMaker XGBoost image runs CPython {IMAGE_PYTHON}, and none was found ({where}). "
            f"Install it (`pyenv install 3.10.13`) or set {PYTHON_OVERRIDE} to its python{IMAGE_PYTHON}."
        )
    return found


def _lock_lines() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in LOCK_FILE.read_text().splitlines())
    return [line for line in lines if line]


def _is_build_tool(requirement: str) -> bool:
    return requirement.split("==", 1)[0].lower() in BUILD_TOOLS


def _key(interpreter: Path) -> str:
    material = "\n".join([*_lock_lines(), *(repr(p) for p in PATCHES), python_version(interpreter)])
    return build_key(material.encode())


def site_packages(env_dir: Path) -> Path:
    return env_dir / "lib" / f"python{IMAGE_PYTHON}" / "site-packages"


def image_environment(build_dir: Path = BUILD_DIR) -> Path:
    """The venv directory, built if this lock has not been built yet."""
    interpreter = image_python()
    stamp = "\n".join(_lock_lines()) + "\n"
    return built_once(build_dir, "xgboost-3.0-5", _key(interpreter), stamp=stamp, build=partial(_build, interpreter))


def _build(interpreter: Path, target: Path) -> None:
    run([str(interpreter), "-m", "venv", str(target)])
    python = str(target / "bin" / "python")
    lines = _lock_lines()
    pip = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check"]
    # The build tools first, so that the sdists in the lock are built with the pinned setuptools
    # (no build isolation: nothing unpinned enters the build).
    run([*pip, *(line for line in lines if _is_build_tool(line))])
    run([*pip, "--no-build-isolation", *(line for line in lines if not _is_build_tool(line))])
    for patch in PATCHES:
        _apply(site_packages(target) / patch.path, patch)
    _check_complete(python)


def _check_complete(python: str) -> None:
    """The lock is installed without dependencies, so check that it holds them all."""
    result = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=300, check=False)
    problems = [line for line in result.stdout.splitlines() if line.strip()]
    unexpected = [line for line in problems if not any(f" requires {name}," in line for name in LEFT_OUT)]
    if unexpected:
        raise ImageEnvironmentError(f"{LOCK_FILE.name} is not a complete lock:\n" + "\n".join(unexpected))


def _apply(path: Path, patch: Patch) -> None:
    """As `sed -i 's/old/new/g'` does (an unmatched pattern is an error here: the lock moved on)."""
    text = path.read_text()
    if patch.old not in text:
        raise ImageEnvironmentError(f"{patch.source}: nothing to replace in {path}; is the lock still the image's?")
    path.write_text(text.replace(patch.old, patch.new))


if __name__ == "__main__":
    try:
        sys.stdout.write(f"{image_environment()}\n")
    except ImageEnvironmentError as error:
        sys.exit(f"make image-env: {error}")
