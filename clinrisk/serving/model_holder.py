"""Which model answers: the serving pointer, followed safely.

A serving process loads the champion (and a challenger, if the pointer routes one) once, and
re-reads the pointer at most every `check_seconds`. A changed pointer loads the new files
beside the old ones and swaps one reference, so a request, which takes one `Deployment`
snapshot at its start, never sees half a swap or two champions. When the store cannot be
read, or the new files are bad, the last good deployment keeps serving and the failure is
reported in `status`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from clinrisk.checksums import directory_checksum
from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import POINTER_KEY, ChallengerRoute, ModelFiles, ServingPointer, read_pointer
from clinrisk.serving.scoring import ServingModel


class NoChampionError(ClinriskError):
    """Nothing can be served: no champion has been promoted, or none could ever be loaded."""


class ModelChecksumError(ClinriskError):
    """A model version's files in the store do not match the checksum the pointer gives."""


def fetch_model_files(store: ObjectStore, files: ModelFiles, cache_dir: Path) -> Path:
    """The directory under `cache_dir` holding `files`, downloaded unless already there intact.
    The download lands in a staging directory renamed into place only once its checksum
    matches, so a failed or bad download never replaces good files. A prefix with no files
    raises the store's `ObjectNotFoundError`; files that do not match, `ModelChecksumError`."""
    directory = cache_dir / f"v{files.version}-{files.checksum[:16]}"
    if directory.is_dir() and directory_checksum(directory) == files.checksum:
        return directory
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".download-"))
    try:
        store.download_dir(files.artifact_prefix, staging)
        if directory_checksum(staging) != files.checksum:
            raise ModelChecksumError(
                f"model version {files.version} at {files.artifact_prefix} does not match its checksum"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    staging.replace(directory)
    return directory


class LoadedModel(Protocol):
    """What the holder needs of a loaded model version: which files it was loaded from."""

    @property
    def version(self) -> int: ...

    @property
    def checksum(self) -> str: ...


M = TypeVar("M", bound=LoadedModel)
ModelLoader = Callable[[Path, str, ModelFiles], M]
"""Loads a model version from its downloaded directory, given its registered name and files."""


@dataclass(frozen=True)
class Deployment(Generic[M]):
    pointer: ServingPointer
    champion: M
    challenger: M | None

    @property
    def route(self) -> ChallengerRoute | None:
        return self.pointer.challenger if self.challenger is not None else None

    def answering_model(self, request_id: str) -> M:
        """The champion, or the canary for its share of requests (stable per request id)."""
        route = self.route
        if route is None or route.mode != "canary" or self.challenger is None:
            return self.champion
        bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
        return self.challenger if bucket < route.fraction else self.champion

    def shadow_model(self) -> M | None:
        route = self.route
        return self.challenger if route is not None and route.mode == "shadow" else None


@dataclass(frozen=True)
class HolderStatus:
    checked_at: datetime | None
    error: str | None  # the last refresh failure, while the last good deployment keeps serving

    @property
    def stale(self) -> bool:
        return self.error is not None


class PointerFollower(Generic[M]):
    """Follows one serving pointer (`key`: one task's) and loads what it names with `load`.
    Each follower has its own lock: loading one task's model never holds another's requests."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        check_seconds: float,
        load: ModelLoader[M],
        key: str = POINTER_KEY,
        cache_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._load = load
        self._key = key
        self._check_seconds = check_seconds
        self._cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="clinrisk-models-"))
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._deployment: Deployment[M] | None = None
        self._next_check = 0.0
        self._refreshing = threading.Lock()
        self._status = HolderStatus(checked_at=None, error=None)

    @property
    def status(self) -> HolderStatus:
        return self._status

    def current(self) -> Deployment[M]:
        """The deployment to answer one request with; refreshes first when the check is due."""
        if self._clock() >= self._next_check:
            self._refresh()
        deployment = self._deployment
        if deployment is None:
            raise NoChampionError(self._status.error or "no champion model has been promoted yet")
        return deployment

    def _refresh(self) -> None:
        # One thread refreshes; the others keep answering with the current deployment. Before
        # the first load there is nothing to answer with, so they wait for it.
        if not self._refreshing.acquire(blocking=self._deployment is None):
            return
        try:
            if self._clock() < self._next_check:
                return  # another thread refreshed while this one waited
            self._deployment = self._load_if_changed(self._deployment)
            self._status = HolderStatus(checked_at=datetime.now(UTC), error=None)
        except Exception as error:  # keep serving the last good deployment, whatever went wrong
            self._status = HolderStatus(checked_at=datetime.now(UTC), error=f"{type(error).__name__}: {error}")
        finally:
            self._next_check = self._clock() + self._check_seconds
            self._refreshing.release()

    def _load_if_changed(self, current: Deployment[M] | None) -> Deployment[M] | None:
        pointer = read_pointer(self._store, self._key)
        if pointer is None:
            return current if current is not None else None
        if current is not None and current.pointer == pointer:
            return current
        champion = self._model(pointer.model_name, pointer.champion_files, current)
        route = pointer.challenger
        challenger = self._model(pointer.model_name, route, current) if route is not None else None
        return Deployment(pointer=pointer, champion=champion, challenger=challenger)

    def _model(self, name: str, files: ModelFiles, current: Deployment[M] | None) -> M:
        loaded = [current.champion, current.challenger] if current is not None else []
        for model in loaded:
            if model is not None and model.version == files.version and model.checksum == files.checksum:
                return model
        directory = fetch_model_files(self._store, files, self._cache_dir)
        return self._load(directory, name, files)


def _readmission_model(directory: Path, name: str, files: ModelFiles) -> ServingModel:
    return ServingModel.load(directory, name=name, version=files.version, checksum=files.checksum)


class ModelHolder(PointerFollower[ServingModel]):
    """Readmission's follower: its pointer, its models (`ServingModel`)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        check_seconds: float,
        cache_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            store, check_seconds=check_seconds, load=_readmission_model, key=POINTER_KEY, cache_dir=cache_dir,
            clock=clock,
        )  # fmt: skip
