"""Unpacking a SageMaker training job's `model.tar.gz` into a model directory, safely.

SageMaker uploads the training container's `/opt/ml/model` as one gzipped tarball. The archive
is written by code running in the container, so it is not trusted: only regular files are
extracted, each under the target directory (no absolute names, no `..`), and the total size
and number of files are capped before anything is written. Links, devices and FIFOs are
refused rather than skipped, so a tampered archive fails loudly instead of half-extracting.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectNotFoundError, ObjectStore

# A model directory is a few files of a few MB (XGBoost JSON, calibration, summary); the caps
# leave room for larger models and stay well inside Lambda's /tmp.
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 1000


class ModelArchiveError(ClinriskError):
    """The model archive is missing, outside the artifacts store, or not a safe tarball."""


def archive_key(store: ObjectStore, uri: str) -> str:
    """The store key of `uri`; refused unless the store itself names that key by that URI (so
    an archive in another bucket, or under another prefix, is never read)."""
    key = urlsplit(uri).path.lstrip("/")
    try:
        inside = bool(key) and store.uri(key) == uri
    except ValueError:
        inside = False
    if not inside:
        raise ModelArchiveError(f"model archive {uri} is not in the artifacts store ({store.uri('')})")
    return key


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    """Where a member goes, relative to the target; None for a directory entry (implied by files)."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise ModelArchiveError(f"model archive member {member.name!r} would land outside the model directory")
    if member.isdir():
        return None
    if not member.isfile():
        raise ModelArchiveError(f"model archive member {member.name!r} is not a regular file (links are refused)")
    parts = [part for part in name.parts if part != "."]
    if not parts:
        raise ModelArchiveError("model archive has a file member without a name")
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class Limits:
    packed_bytes: int = MAX_ARCHIVE_BYTES
    unpacked_bytes: int = MAX_UNPACKED_BYTES
    members: int = MAX_MEMBERS


def unpack(data: bytes, target: Path, limits: Limits = Limits()) -> list[str]:
    """Extract the regular files of a gzipped tarball into `target`; return their relative paths."""
    if len(data) > limits.packed_bytes:
        raise ModelArchiveError(f"model archive is {len(data)} bytes, over the {limits.packed_bytes}-byte cap")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = _checked_members(archive, limits)
            written = [_extract(archive, member, path, target) for member, path in members]
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ModelArchiveError(f"model archive is not a readable .tar.gz: {type(error).__name__}") from None
    if not written:
        raise ModelArchiveError("model archive holds no files")
    return written


def _checked_members(archive: tarfile.TarFile, limits: Limits) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Every member checked, and the caps applied, before the first byte is written."""
    files: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
    total = 0
    for count, member in enumerate(archive, start=1):
        if count > limits.members:
            raise ModelArchiveError(f"model archive has over {limits.members} members")
        path = _member_path(member)
        if path is None:
            continue
        total += member.size
        if total > limits.unpacked_bytes:
            raise ModelArchiveError(f"model archive unpacks to over {limits.unpacked_bytes} bytes")
        files.append((member, path))
    return files


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, path: PurePosixPath, target: Path) -> str:
    destination = target.joinpath(*path.parts)
    if not destination.resolve().is_relative_to(target.resolve()):
        raise ModelArchiveError(f"model archive member {member.name!r} would land outside the model directory")
    source = archive.extractfile(member)
    if source is None:  # only for non-files, which _member_path refused
        raise ModelArchiveError(f"model archive member {member.name!r} has no content")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with source, destination.open("wb") as handle:
        shutil.copyfileobj(source, handle)
    return path.as_posix()


def unpack_stored_archive(store: ObjectStore, uri: str, target: Path) -> list[str]:
    """Read the archive at `uri` from the artifacts store and unpack it into `target`."""
    key = archive_key(store, uri)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError:
        raise ModelArchiveError(f"no model archive at {uri}; the training job wrote no model") from None
    return unpack(data, target)


def publish_archive(store: ObjectStore, uri: str, prefix: str) -> list[str]:
    """Unpack the archive at `uri` and upload its files under `prefix` in the same store.
    Re-running writes the same bytes to the same keys, so a retried evaluation is harmless."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model"
        target.mkdir()
        files = unpack_stored_archive(store, uri, target)
        store.upload_dir(target, prefix)
    return files
