"""Wiring: the settings pick the adapters behind each port."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from clinrisk.endpoint_deployment import EndpointPublisher
from clinrisk.explain.publishing import chain_publishers
from clinrisk.ports import (
    EndpointDeployer,
    EndpointInvoker,
    KnowledgeIndex,
    NarrativeWriter,
    Notifier,
    ObjectStore,
    Trainer,
)
from clinrisk.registry import Registry
from clinrisk.serving_pointer import ServingPointer
from clinrisk.settings import Settings

if TYPE_CHECKING:
    from clinrisk.adapters.local_endpoint import LocalEndpoint
    from clinrisk.explain.service import Explainer
    from clinrisk.explain.similar_index import SimilarIndexPublisher, SimilarIndexWriter
    from clinrisk.explain.unavailable import UnavailableIndex

logger = logging.getLogger(__name__)
T = TypeVar("T")


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


def build_endpoint_invoker(settings: Settings) -> EndpointInvoker | None:
    """The `sagemaker` serving mode's endpoint, as the predict function calls it; None in the lambda mode."""
    if settings.sagemaker is None:
        return None
    if settings.backend == "aws":
        from clinrisk.adapters.sagemaker_endpoint import SageMakerEndpointInvoker

        return SageMakerEndpointInvoker(settings.sagemaker.endpoint_name, region=settings.aws_region)
    return _local_endpoint(settings, build_store(settings))


def endpoint_publisher(settings: Settings, store: ObjectStore) -> EndpointPublisher | None:
    """What the registry calls with each new champion in the `sagemaker` serving mode."""
    if settings.sagemaker is None:
        return None
    deployer: EndpointDeployer
    if settings.backend == "aws":
        from clinrisk.adapters.sagemaker_endpoint import SageMakerEndpointDeployer

        deployer = SageMakerEndpointDeployer(settings.sagemaker, region=settings.aws_region)
    else:
        deployer = _local_endpoint(settings, store)
    return EndpointPublisher(store=store, deployer=deployer, endpoint_name=settings.sagemaker.endpoint_name)


def champion_publisher(settings: Settings, store: ObjectStore) -> Callable[[ServingPointer], None]:
    """What the registry calls with each new champion: the endpoint deployment (the `sagemaker`
    serving mode), then, locally, the similar-patient index of its training encounters. On aws the
    promote function has no numpy or pandas (its bundle stays small), so the index is not built there yet."""
    similar = similar_index_publisher(settings, store) if settings.backend == "local" else None
    return chain_publishers(endpoint_publisher(settings, store), similar)


def similar_index_publisher(settings: Settings, store: ObjectStore) -> SimilarIndexPublisher:
    """Indexes a new champion's training encounters for similar-patient search."""
    from clinrisk.explain.similar_index import SimilarIndexPublisher
    from clinrisk.model_holder import fetch_model_files
    from clinrisk.scoring import ServingModel
    from clinrisk.serving_pointer import ModelFiles

    def load_model(pointer: ServingPointer) -> ServingModel:
        files = ModelFiles(version=pointer.version, artifact_prefix=pointer.artifact_prefix, checksum=pointer.checksum)
        with tempfile.TemporaryDirectory(prefix="clinrisk-similar-model-") as scratch:
            directory = fetch_model_files(store, files, Path(scratch))
            return ServingModel.load(
                directory, name=pointer.model_name, version=pointer.version, checksum=pointer.checksum
            )

    return SimilarIndexPublisher(store=store, load_model=load_model, write=build_similar_index(settings).write)


def build_similar_index(settings: Settings) -> SimilarIndexWriter:
    if settings.backend == "aws":
        from clinrisk.adapters.opensearch import OpenSearchSimilarPatientIndex

        return OpenSearchSimilarPatientIndex.from_settings(settings)
    from clinrisk.adapters.local_similar import LocalSimilarPatientIndex

    return LocalSimilarPatientIndex(settings.explain_root / "similar")


def build_knowledge_index(settings: Settings) -> KnowledgeIndex:
    if settings.backend == "aws":
        from clinrisk.adapters.opensearch import OpenSearchKnowledgeIndex

        return OpenSearchKnowledgeIndex.from_settings(settings)
    from clinrisk.adapters.local_embeddings import WordLlamaEmbedder
    from clinrisk.adapters.local_knowledge import LocalKnowledgeIndex

    return LocalKnowledgeIndex(settings.explain_root / "knowledge", WordLlamaEmbedder())


def build_explainer(settings: Settings) -> Explainer:
    """The explain function's ports. An index that cannot be opened now is not fatal: it becomes
    one that fails each call, so explanations degrade instead of the function failing to start."""
    from clinrisk.explain.service import Explainer
    from clinrisk.explain.writer import DeterministicWriter

    writer: NarrativeWriter = DeterministicWriter()
    if settings.explain.chosen_writer(settings.backend) == "bedrock":
        from clinrisk.adapters.bedrock import BedrockWriter

        writer = BedrockWriter.from_settings(settings)
    if settings.backend == "aws":
        embedding = settings.explain.embedding_model_id
    else:
        from clinrisk.adapters.local_embeddings import WORDLLAMA_ID

        embedding = WORDLLAMA_ID
    return Explainer(
        knowledge=_opened(lambda: build_knowledge_index(settings), "knowledge index"),
        similar=_opened(lambda: build_similar_index(settings), "similar-patient index"),
        writer=writer,
        embedding_id=embedding,
        settings=settings.explain,
    )


def _opened(build: Callable[[], T], what: str) -> T | UnavailableIndex:
    from clinrisk.explain.unavailable import UnavailableIndex

    try:
        return build()
    except Exception as error:  # degrade, don't fail: the error's type is the reason, never its text
        logger.error("the %s could not be opened: %s", what, type(error).__name__)
        return UnavailableIndex(f"the {what} could not be opened: {type(error).__name__}")


def _local_endpoint(settings: Settings, store: ObjectStore) -> LocalEndpoint:
    from clinrisk.adapters.local_endpoint import LocalEndpoint

    name = settings.sagemaker.endpoint_name if settings.sagemaker else "clinrisk-local"
    return LocalEndpoint(store, name=name, state_dir=settings.home_dir / "endpoints")


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
            publish=champion_publisher(settings, store),
        ),
    )
