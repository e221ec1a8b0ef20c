"""Lineage of a run: which data files (URI and sha256), which task file (its sha256) and which code.

The validate stage writes it beside the run's channels (`runs/<run id>/lineage.json`); the evaluate
stage logs it on the tracked run and tags the registered version with it, so every version says
what it was trained on and by which code.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from clinrisk.ports import ObjectNotFoundError, ObjectStore

LINEAGE_FILE = "lineage.json"
_REPOSITORY = Path(__file__).resolve().parents[2]


class DataFile(BaseModel):
    uri: str
    sha256: str


class Lineage(BaseModel):
    task: str
    task_file_sha256: str
    data: list[DataFile]
    code_version: str

    def tags(self) -> dict[str, str]:
        """Flat MLflow params and tags (one file: its URI and hash; several: numbered)."""
        flat = {"task": self.task, "task_file_sha256": self.task_file_sha256, "code_version": self.code_version}
        for i, item in enumerate(self.data):
            suffix = "" if len(self.data) == 1 else f"_{i + 1}"
            flat |= {f"data_uri{suffix}": item.uri, f"data_sha256{suffix}": item.sha256}
        return flat


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of the code that runs (with `+dirty` if it has uncommitted changes), or the
    installed package's version where there is no git checkout (a Lambda, a training container)."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        try:
            return f"clinrisk {metadata.version('clinrisk')}"
        except metadata.PackageNotFoundError:
            return "unknown"
    return f"git {head}{'+dirty' if dirty else ''}"


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_REPOSITORY), *arguments], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def lineage_key(run_prefix: str) -> str:
    return f"{run_prefix}/{LINEAGE_FILE}"


def write_lineage(store: ObjectStore, run_prefix: str, lineage: Lineage) -> None:
    store.write_bytes(lineage_key(run_prefix), lineage.model_dump_json(indent=2).encode())


def read_lineage(store: ObjectStore, run_prefix: str) -> Lineage | None:
    """The run's lineage; None for a run whose validate stage wrote none (before lineage existed)."""
    try:
        return Lineage.model_validate(json.loads(store.read_bytes(lineage_key(run_prefix))))
    except ObjectNotFoundError:
        return None
