"""The model registry: MLflow registered-model versions, their aliases, and promotion.

Aliases: `challenger` marks the newest registered candidate, `champion` the model in service,
`previous-champion` the one before it. The champion's history is kept as a registered-model
tag, so `rollback` can walk back more than one step.

Every change of aliases and the serving pointer happens under one lock and as a
compare-and-set against the champion that the run evaluated against: if another pipeline
promoted in between, this promotion is refused (the version is tagged `stale`) rather than
silently replacing a model that was never compared with it.

Each task has its own registered model, aliases and serving pointer (`for_task`). Every change of
champion is recorded in the registered model's audit trail (`audit.<time>` tags): what was done,
to which version, by whom (the OS user locally, the IAM principal in the cloud) and why.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel

from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import (
    ChallengerRoute,
    ServingPointer,
    pointer_key,
    read_pointer,
    write_pointer,
)
from clinrisk.settings import DEFAULT_TASK

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
HISTORY_TAG = "champion_history"
ARTIFACT_PREFIX_TAG = "artifact_prefix"
CHECKSUM_TAG = "checksum"
GATE_TAG = "gate_decision"
GATE_REASONS_TAG = "gate_reasons"
AUDIT_TAG_PREFIX = "audit."
MAX_REASON_CHARACTERS = 1000


class RegistryError(ClinriskError):
    """A registry operation cannot be done as asked."""


class StaleChampionError(RegistryError):
    """Another run changed the champion after this run was evaluated against it."""


class AuditEntry(BaseModel):
    """One change of champion: what, which version (and the one before), who and why."""

    at: datetime
    action: Literal["promote", "promote-manual", "rollback"]
    version: int
    previous: int | None
    actor: str
    reason: str


def local_user() -> str:
    """Who acts locally: the operating-system user."""
    try:
        return f"local user {getpass.getuser()}"
    except (KeyError, OSError):
        return "local user (unknown)"


class VersionInfo(BaseModel):
    version: int
    run_id: str
    aliases: list[str]
    gate_decision: str | None
    created_at: datetime
    metrics: dict[str, float] = {}


@dataclass
class Registry:
    """Registry operations over an MLflow tracking URI, plus the serving pointer in `store`."""

    tracking_uri: str
    model_name: str
    store: ObjectStore
    lock_path: Path
    # Called with each new champion's pointer before serving follows it (the `sagemaker` serving
    # mode deploys to its endpoint here); an exception leaves the champion unchanged.
    publish: Callable[[ServingPointer], None] | None = None
    task: str = DEFAULT_TASK
    # The `publish` of another task's registry (`for_task`): its own endpoint in the `sagemaker` serving
    # mode, then its own similar-patient index.
    task_publisher: Callable[[str], Callable[[ServingPointer], None] | None] | None = None

    _ready: bool = False

    @property
    def pointer_key(self) -> str:
        return pointer_key(self.task)

    def for_task(self, task: str, model_name: str) -> Registry:
        """The registry of `task`: its own registered model, aliases and serving pointer, and what its
        promotion publishes (`task_publisher(task)`: that task's endpoint in the `sagemaker` serving mode
        and its similar-patient index)."""
        if task == self.task and model_name == self.model_name:
            return self
        publish = self.task_publisher(task) if self.task_publisher is not None else None
        return replace(self, task=task, model_name=model_name, publish=publish, _ready=False)

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        if not self._ready:
            # Constructing the first client on a new SQLite store creates its tables (and the
            # registry's on first use); two processes doing that at once collide, so the first
            # touch happens under the lock. MLflow caches the store per URI after that.
            with self.locked():
                client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                client.search_registered_models(max_results=1)
            self._ready = True
            return client
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @cached_property
    def _file_lock(self) -> FileLock:
        # One lock object per registry, so that taking the lock again on the same thread (the
        # first `client` access inside `promote_manually`, say) re-enters instead of waiting
        # forever on a second lock of the same file.
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path), timeout=600)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialises writers: SQLite allows one, and promotion is a read-check-write."""
        with self._file_lock:
            yield

    def ensure_model(self, description: str | None = None) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            default = "30-day readmission risk of diabetic inpatients (clinrisk)."
            self.client.create_registered_model(
                self.model_name,
                description=default if self.task == DEFAULT_TASK else description or f"task {self.task} (clinrisk)",
                tags={"task": self.task},
            )

    def champion_version(self) -> int | None:
        return self._alias(CHAMPION)

    def _alias(self, alias: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None

    def register(self, model_uri: str, run_id: str, tags: dict[str, str]) -> int:
        """Register a logged model as a new version and point `challenger` at it."""
        with self.locked():
            self.ensure_model()
            created = self.client.create_model_version(self.model_name, model_uri, run_id=run_id, tags=tags)
            version = int(created.version)
            self.client.set_registered_model_alias(self.model_name, CHALLENGER, str(version))
        return version

    def tag_version(self, version: int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, value)

    def _history(self) -> list[int]:
        tags = self.client.get_registered_model(self.model_name).tags
        return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]

    def promote(
        self, version: int, *, expected_champion: int | None, actor: str = "retraining pipeline"
    ) -> ServingPointer:
        """Make `version` the champion, if the champion is still `expected_champion`."""
        with self.locked():
            current = self.champion_version()
            if current != expected_champion:
                self.tag_version(version, {GATE_TAG: "stale"})
                raise StaleChampionError(
                    f"version {version} was evaluated against champion {expected_champion}, "
                    f"but the champion is now {current}; not promoted"
                )
            audit = ("promote", actor, "passed the promotion gate")
            return self._make_champion(version, history=[*self._history(), version], audit=audit)

    def promote_manually(
        self, version: int, *, reason: str = "no reason given", actor: str | None = None
    ) -> ServingPointer:
        """`clinrisk models promote VERSION --reason ...`: an operator's explicit choice, no gate."""
        with self.locked():
            self._require_version(version)
            audit = ("promote-manual", actor or local_user(), reason)
            return self._make_champion(version, history=[*self._history(), version], audit=audit)

    def rollback(self, *, reason: str = "no reason given", actor: str | None = None) -> ServingPointer:
        """Reinstate the champion before the current one."""
        with self.locked():
            history = self._history()
            if len(history) < 2:
                raise RegistryError("there is no earlier champion to roll back to")
            audit = ("rollback", actor or local_user(), reason)
            return self._make_champion(history[-2], history=history[:-1], audit=audit)

    def audit_trail(self) -> list[AuditEntry]:
        """Every recorded change of champion, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(self.model_name).tags
        except MlflowException:
            return []
        entries = [AuditEntry.model_validate_json(v) for k, v in tags.items() if k.startswith(AUDIT_TAG_PREFIX)]
        return sorted(entries, key=lambda entry: entry.at)

    def _record(self, action: str, actor: str, reason: str, *, version: int, previous: int | None, at: datetime) -> str:
        entry = AuditEntry(
            at=at,
            action=action,
            version=version,
            previous=previous,
            actor=actor,
            reason=reason[:MAX_REASON_CHARACTERS],
        )
        key = f"{AUDIT_TAG_PREFIX}{at:%Y%m%dT%H%M%S%f}"
        self.client.set_registered_model_tag(self.model_name, key, entry.model_dump_json())
        return key

    def _require_version(self, version: int) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.model_name, str(version))
        except MlflowException:
            raise RegistryError(f"model {self.model_name} has no version {version}") from None

    def _make_champion(self, version: int, *, history: list[int], audit: tuple[str, str, str]) -> ServingPointer:
        details = self._require_version(version)
        previous = self.champion_version()
        # A new champion ends any challenger trial: it was measured against the old one.
        pointer = ServingPointer(
            model_name=self.model_name,
            version=version,
            model_uri=f"models:/{self.model_name}/{version}",
            artifact_prefix=details.tags[ARTIFACT_PREFIX_TAG],
            checksum=details.tags[CHECKSUM_TAG],
            run_id=details.run_id,
            promoted_at=datetime.now(UTC),
            previous_version=previous,
            trained_at=datetime.fromtimestamp(details.creation_timestamp / 1000, tz=UTC),
            metrics=self._test_metrics(details.run_id),
        )
        old_history = self._history()
        recorded: str | None = None
        try:
            self._move_aliases(version, previous, history, pointer.promoted_at)
            recorded = self._record(*audit, version=version, previous=previous, at=pointer.promoted_at)
            if self.publish is not None:
                self.publish(pointer)
            # The pointer goes last: serving follows it, so it must never name a model that
            # the registry does not call champion.
            write_pointer(self.store, pointer, self.pointer_key)
        except Exception:
            self._restore(previous, old_history)
            if recorded is not None:
                self.client.delete_registered_model_tag(self.model_name, recorded)
            raise
        return pointer

    def _test_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        metrics = self.client.get_run(run_id).data.metrics
        return {k: float(v) for k, v in metrics.items() if k.startswith("test_")}

    def route_challenger(
        self, version: int, *, mode: Literal["canary", "shadow"], fraction: float = 0.0
    ) -> ServingPointer:
        """Serve `version` beside the champion as a canary or a shadow (`clinrisk models challenger`)."""
        with self.locked():
            pointer = self._current_pointer()
            if version == pointer.version:
                raise RegistryError(f"version {version} is the champion; a challenger must be another version")
            details = self._require_version(version)
            route = ChallengerRoute(
                version=version,
                artifact_prefix=details.tags[ARTIFACT_PREFIX_TAG],
                checksum=details.tags[CHECKSUM_TAG],
                mode=mode,
                fraction=fraction,
            )
            updated = pointer.model_copy(update={"challenger": route})
            write_pointer(self.store, updated, self.pointer_key)
            return updated

    def end_challenger(self) -> ServingPointer:
        with self.locked():
            updated = self._current_pointer().model_copy(update={"challenger": None})
            write_pointer(self.store, updated, self.pointer_key)
            return updated

    def _current_pointer(self) -> ServingPointer:
        pointer = read_pointer(self.store, self.pointer_key)
        if pointer is None:
            raise RegistryError("there is no champion yet; promote a version first")
        return pointer

    def _move_aliases(self, version: int, previous: int | None, history: list[int], at: datetime) -> None:
        client = self.client
        client.set_registered_model_alias(self.model_name, CHAMPION, str(version))
        if previous is not None and previous != version:
            client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, str(previous))
        if self._alias(CHALLENGER) == version:
            client.delete_registered_model_alias(self.model_name, CHALLENGER)
        client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(history))
        client.set_model_version_tag(self.model_name, str(version), "promoted_at", at.isoformat())

    def _restore(self, champion: int | None, history: list[int]) -> None:
        """Undo a half-done promotion so the registry agrees with the unchanged pointer."""
        client = self.client
        if champion is None:
            client.delete_registered_model_alias(self.model_name, CHAMPION)
        else:
            client.set_registered_model_alias(self.model_name, CHAMPION, str(champion))
        client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(history))

    def versions(self) -> list[VersionInfo]:
        self.ensure_model()
        client = self.client
        found = client.search_model_versions(f"name='{self.model_name}'")
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(self.model_name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        infos = []
        for mv in found:
            run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            infos.append(
                VersionInfo(
                    version=int(mv.version),
                    run_id=mv.run_id or "",
                    aliases=sorted(aliases.get(str(mv.version), [])),
                    gate_decision=mv.tags.get(GATE_TAG),
                    created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                    metrics={k: v for k, v in run_metrics.items() if k.startswith("test_")},
                )
            )
        return sorted(infos, key=lambda v: v.version)
