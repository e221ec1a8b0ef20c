"""Local adapters: a directory for S3, a subprocess for SageMaker training, a file for SNS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clinrisk.ports import ObjectNotFoundError, TrainingFailedError, TrainingJob

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "sagemaker_jobs" / "train.py"


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`:
    rename is atomic on POSIX, so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class DirectoryObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file or directory behind a key (local adapters share the directory directly)."""
        return self._path(key)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("object key escapes the store")
        return path

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object at {self.uri(key)}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write(self._path(key), data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def upload_dir(self, directory: Path, prefix: str) -> None:
        destination = self._path(prefix)
        if directory.resolve() != destination:
            shutil.copytree(directory, destination, dirs_exist_ok=True)

    def download_dir(self, prefix: str, directory: Path) -> None:
        source = self._path(prefix)
        if not source.is_dir():
            raise ObjectNotFoundError(f"no objects under {self.uri(prefix)}")
        shutil.copytree(source, directory, dirs_exist_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


class SubprocessTrainer:
    """Runs `sagemaker_jobs/train.py` as SageMaker would: channels, model and output
    directories in SM_* variables, hyperparameters as `--name value` arguments."""

    def __init__(self, store: DirectoryObjectStore, script: Path = TRAIN_SCRIPT, timeout_seconds: float = 3600) -> None:
        self.store = store
        self.script = script
        self.timeout_seconds = timeout_seconds

    def train(self, job: TrainingJob) -> None:
        env = {
            **os.environ,
            "SM_MODEL_DIR": str(self.store.path(job.model_prefix)),
            "SM_OUTPUT_DATA_DIR": str(self.store.path(job.output_prefix)),
            "SM_CHANNELS": json.dumps(sorted(job.channels)),
            "SM_HPS": json.dumps(job.hyperparameters),
            **{f"SM_CHANNEL_{name.upper()}": str(self.store.path(p)) for name, p in job.channels.items()},
        }
        arguments = [item for k, v in job.hyperparameters.items() for item in (f"--{k.replace('_', '-')}", str(v))]
        completed = subprocess.run(
            [sys.executable, str(self.script), *arguments],
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout_seconds,
            check=False,
        )
        if completed.returncode != 0:
            reason = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            raise TrainingFailedError(f"training job {job.name} failed: {reason}")


class OutboxNotifier:
    """Appends each notification to a JSON-lines outbox file and echoes its subject."""

    def __init__(self, outbox: Path, echo: bool = False) -> None:
        self.outbox = outbox
        self.echo = echo

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        entry = {"at": datetime.now(UTC).isoformat(), "subject": subject, "message": message}
        with self.outbox.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
        if self.echo:
            sys.stderr.write(f"[notify] {subject}\n")
