"""The checksum that identifies a model directory, kept free of numpy so that the small promote
Lambda can check the files it publishes (`clinrisk.model.risk_model` re-exports it)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def directory_checksum(directory: Path) -> str:
    """sha256 over the names and bytes of every file below `directory`, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
