"""Wiring: the settings pick the adapters behind each port."""

from __future__ import annotations

from dataclasses import dataclass

from clinrisk.ports import Notifier, ObjectStore, Trainer
from clinrisk.registry import Registry
from clinrisk.settings import Settings


@dataclass(frozen=True)
class Ports:
    store: ObjectStore
    trainer: Trainer
    notifier: Notifier
    registry: Registry


def build_store(settings: Settings) -> ObjectStore:
    """Only the object store: what serving needs (the models and the serving pointer)."""
    if settings.backend == "aws":
        from clinrisk.adapters.aws import aws_store

        return aws_store(settings)
    from clinrisk.adapters.local import DirectoryObjectStore

    return DirectoryObjectStore(settings.store_root)


def build_ports(settings: Settings, *, echo_notifications: bool = False) -> Ports:
    if settings.backend == "aws":
        from clinrisk.adapters.aws import aws_ports

        return aws_ports(settings)
    from clinrisk.adapters.local import DirectoryObjectStore, OutboxNotifier, SubprocessTrainer

    settings.home_dir.mkdir(parents=True, exist_ok=True)
    store = DirectoryObjectStore(settings.store_root)
    return Ports(
        store=store,
        trainer=SubprocessTrainer(store),
        notifier=OutboxNotifier(settings.outbox_path, echo=echo_notifications),
        registry=Registry(
            tracking_uri=settings.tracking_uri,
            model_name=settings.model_name,
            store=store,
            lock_path=settings.home_dir / "registry.lock",
        ),
    )
