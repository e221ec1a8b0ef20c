"""What the image harnesses (tests/image, tests/lambda_image) share to build an image's Python environment
on this machine: the subprocess runner, the build key, and building a venv once per key.

Each harness keeps what differs: its interpreter, its key material (lock, patches) and how it installs.
A venv lives in build/image/<name>-<key>; it is built under a file lock, so parallel pytest workers share
one build, and the stamp file, written last, marks it finished. A new key's build removes the older ones.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

_STAMP = ".clinrisk-image-env"
_TIMEOUT_SECONDS = 1800


class ImageEnvironmentError(RuntimeError):
    """The image's environment cannot be built here."""


def run(command: list[str]) -> str:
    """The command's stdout; raises with the tail of its output when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise ImageEnvironmentError(f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def python_version(interpreter: Path) -> str:
    """`sys.version` of `interpreter`: part of every key, so that a new patch release rebuilds."""
    return run([str(interpreter), "-c", "import sys; print(sys.version)"]).strip()


def build_key(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]


def built_once(build_dir: Path, name: str, key: str, *, stamp: str, build: Callable[[Path], None]) -> Path:
    """build_dir/<name>-<key>, made by `build(target)` unless an earlier run finished it (its stamp holds `stamp`)."""
    target = build_dir / f"{name}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir / f".{name}.lock")):
        if not (target / _STAMP).is_file():
            shutil.rmtree(target, ignore_errors=True)
            build(target)
            (target / _STAMP).write_text(stamp)
            for stale in build_dir.glob(f"{name}-*"):  # earlier keys' builds
                if stale != target:
                    shutil.rmtree(stale, ignore_errors=True)
    return target
