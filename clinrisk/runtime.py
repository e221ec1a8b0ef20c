"""Wiring: the one place that assembles objects. The settings pick the adapter behind each port.

Everything below `clinrisk.runtime` takes its ports as parameters; the CLI, the local API and the
Lambda handlers call these builders once per process. Adapters are imported inside the builders,
so a process loads only its backend's (boto3 only on the aws backend).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from clinrisk.errors import ClinriskError, ConfigurationError
from clinrisk.explain.ports import KnowledgeIndex, LoadableSimilarIndex, NarrativeWriter, SimilarPatientIndex
from clinrisk.explain.publishing import SimilarIndexPublisher, chain_publishers
from clinrisk.explain.similar_documents import SimilarDocuments
from clinrisk.pipeline.contracts import Ports
from clinrisk.ports import EndpointDeployer, EndpointInvoker, ObjectStore
from clinrisk.registry.model_registry import Registry
from clinrisk.registry.serving_pointer import ServingPointer
from clinrisk.serving.endpoint_deployment import EndpointPublisher
from clinrisk.settings import DEFAULT_TASK, Settings

# Imported where used, so that each Lambda loads only what its bundle holds: the promote bundle,
# which builds the ports, has no numpy, which scoring needs.
if TYPE_CHECKING:
    from clinrisk.adapters.local_endpoint import LocalEndpoint
    from clinrisk.batch.cloud import BatchPorts, BatchSettings
    from clinrisk.capture.capturer import Capturer
    from clinrisk.explain.service import Explainer
    from clinrisk.explain.unavailable import UnavailableIndex
    from clinrisk.serving.prediction import Serving
    from clinrisk.serving.tasks import ServedTasks, TaskServing

logger = logging.getLogger(__name__)
T = TypeVar("T")


def build_store(settings: Settings) -> ObjectStore:
    """Only the object store: what serving needs (the models and the serving pointer)."""
    if settings.backend == "aws":
        from clinrisk.adapters.aws import aws_store

        return aws_store(settings)
    from clinrisk.adapters.local import DirectoryObjectStore

    return DirectoryObjectStore(settings.store_root)


def build_endpoint_invoker(settings: Settings, task: str = DEFAULT_TASK) -> EndpointInvoker | None:
    """The `sagemaker` serving mode's endpoint of `task` (`endpoint_for`, the one its promotion deploys
    to), as the predict function calls it; None in the lambda mode."""
    if settings.sagemaker is None:
        return None
    endpoint = settings.sagemaker.endpoint_for(task)
    if settings.backend == "aws":
        from clinrisk.adapters.sagemaker_endpoint import SageMakerEndpointInvoker

        return SageMakerEndpointInvoker.from_settings(
            settings.sagemaker, region=settings.aws_region, endpoint_name=endpoint
        )
    return _local_endpoint(settings, build_store(settings), endpoint)


def build_serving(settings: Settings) -> Serving:
    """What answers the prediction API: the endpoint in the `sagemaker` serving mode, else a model
    holder that follows the serving pointer."""
    from clinrisk.serving.model_holder import ModelHolder
    from clinrisk.serving.prediction import Serving
    from clinrisk.serving.scoring import Bands

    store = build_store(settings)
    endpoint = build_endpoint_invoker(settings)
    holder = None if endpoint else ModelHolder(store, check_seconds=settings.serving.pointer_check_seconds)
    return Serving(settings, Bands.from_settings(settings), store, holder, endpoint, build_capturer(settings))


def endpoint_publisher(settings: Settings, store: ObjectStore, task: str = DEFAULT_TASK) -> EndpointPublisher | None:
    """What the registry of `task` calls with each new champion in the `sagemaker` serving mode: the
    deployment to that task's own endpoint (`SageMakerServing.endpoint_for`)."""
    if settings.sagemaker is None:
        return None
    endpoint = settings.sagemaker.endpoint_for(task)
    deployer: EndpointDeployer
    if settings.backend == "aws":
        from clinrisk.adapters.sagemaker_endpoint import SageMakerEndpointDeployer

        deployer = SageMakerEndpointDeployer(settings.sagemaker, region=settings.aws_region, endpoint_name=endpoint)
    else:
        deployer = _local_endpoint(settings, store, endpoint)
    return EndpointPublisher(store=store, deployer=deployer, endpoint_name=endpoint, task=task)


def champion_publisher(
    settings: Settings, store: ObjectStore, task: str = DEFAULT_TASK
) -> Callable[[ServingPointer], None]:
    """What the registry of `task` calls with each new champion: the deployment to the task's own
    endpoint (the `sagemaker` serving mode), then the loading of its similar-patient documents into
    the task's own index (best effort)."""
    return chain_publishers(endpoint_publisher(settings, store, task), similar_index_publisher(settings, store, task))


def task_publisher(settings: Settings, store: ObjectStore) -> Callable[[str], Callable[[ServingPointer], None]]:
    """The champion publisher of each task, by name, for the registry's `for_task`."""
    return lambda task: champion_publisher(settings, store, task)


def similar_index_publisher(settings: Settings, store: ObjectStore, task: str = DEFAULT_TASK) -> SimilarIndexPublisher:
    """Loads a new champion's similar-patient documents (written by its training job) into its
    task's index. The index is opened when a champion is published, not when the ports are built:
    promotion must not fail to start because the collection is unreachable."""

    def load(version: int, documents: SimilarDocuments) -> None:
        build_similar_index(settings, task).load(version, documents)

    return SimilarIndexPublisher(store=store, load=load)


def build_similar_index(settings: Settings, task: str = DEFAULT_TASK) -> LoadableSimilarIndex:
    """The task's own similar-patient index: each task has its own factors, so its own vectors.
    Readmission's stays where it always was."""
    if settings.backend == "aws":
        from clinrisk.adapters.opensearch import OpenSearchSimilarPatientIndex

        return OpenSearchSimilarPatientIndex.from_settings(settings, task)
    from clinrisk.adapters.local_similar import LocalSimilarPatientIndex

    root = settings.explain_root / "similar"
    return LocalSimilarPatientIndex(root if task == DEFAULT_TASK else root / "tasks" / task)


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

    @functools.cache
    def similar(task: str) -> SimilarPatientIndex:
        return _opened(lambda: build_similar_index(settings, task), "similar-patient index")

    return Explainer(
        knowledge=_opened(lambda: build_knowledge_index(settings), "knowledge index"),
        similar=similar,
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


def _local_endpoint(settings: Settings, store: ObjectStore, name: str | None = None) -> LocalEndpoint:
    from clinrisk.adapters.local_endpoint import LocalEndpoint

    name = name or (settings.sagemaker.endpoint_name if settings.sagemaker else "clinrisk-local")
    return LocalEndpoint(store, name=name, state_dir=settings.home_dir / "endpoints")


def build_ports(settings: Settings, *, echo_notifications: bool = False) -> Ports:
    if settings.backend == "aws":
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
            task_publisher=task_publisher(settings, store),
        ),
    )


def aws_ports(settings: Settings) -> Ports:
    """S3 store, SNS notifier, MLflow registry (serving pointer in S3) for the aws backend."""
    from clinrisk.adapters.aws import (
        REGISTRY_LOCK_PATH,
        SnsNotifier,
        UnavailableTrainer,
        UnconfiguredNotifier,
        aws_store,
    )

    store = aws_store(settings)
    if not settings.mlflow_tracking_uri:
        raise ConfigurationError(
            "MLFLOW_TRACKING_URI is not set; the aws backend needs the MLflow tracking server "
            "(the local SQLite default would live on the Lambda's disk)"
        )
    notifier = SnsNotifier(settings.alerts_topic_arn) if settings.alerts_topic_arn else UnconfiguredNotifier()
    return Ports(
        store=store,
        trainer=UnavailableTrainer(),
        notifier=notifier,
        registry=Registry(
            tracking_uri=settings.tracking_uri,
            model_name=settings.model_name,
            store=store,
            lock_path=REGISTRY_LOCK_PATH,
            publish=champion_publisher(settings, store),
            task_publisher=task_publisher(settings, store),
        ),
    )


def data_store(settings: Settings, bucket: str) -> ObjectStore:
    """The data bucket, read only. The ports hold the artifacts bucket; only the aws backend has a
    data bucket (locally, `clinrisk pipeline run` validates a file path)."""
    if settings.backend != "aws":
        raise ClinriskError("the validate Lambda reads the data bucket, which only the aws backend has")
    from clinrisk.adapters.aws import S3ObjectStore

    return S3ObjectStore(bucket)


def batch_ports(settings: Settings, batch: BatchSettings) -> BatchPorts:
    """The aws backend's ports (cloud batch scoring has no local backend: locally, `clinrisk score`)."""
    if settings.backend != "aws":
        raise ClinriskError("cloud batch scoring runs on the aws backend; locally, run `clinrisk score`")
    if not batch.work_bucket:
        raise ClinriskError("CLINRISK_BATCH_WORK_BUCKET is not set; batch scoring keeps its work files there")
    from clinrisk.adapters.aws import S3ObjectStore, aws_store
    from clinrisk.batch.cloud import BatchPorts
    from clinrisk.serving.scoring import Bands

    def bucket(name: str) -> ObjectStore:
        return S3ObjectStore(name, kms_key_id=settings.kms_key_id)

    return BatchPorts(
        settings=batch,
        models=aws_store(settings),
        work=bucket(batch.work_bucket),
        bucket=bucket,
        bands=Bands.from_settings(settings),
        capture=build_capturer(settings),
    )


def build_capturer(settings: Settings) -> Capturer | None:
    """Prediction capture: Firehose and the Secrets Manager key on aws, Parquet and a 0600 key file locally.
    None when capture is off, or cannot be set up: serving goes on without it (and says so in the log)."""
    if not settings.monitoring.capture:
        return None
    try:
        return _capturer(settings)
    except Exception as error:
        import logging

        logging.getLogger(__name__).error("prediction capture is off", extra={"error": type(error).__name__})
        return None


def _capturer(settings: Settings) -> Capturer | None:
    rules = settings.monitoring
    from clinrisk.capture.capturer import Capturer
    from clinrisk.capture.keys import IdKeyer
    from clinrisk.ports import CaptureSink

    sink: CaptureSink
    if settings.backend == "aws":
        from clinrisk.adapters.boto import client
        from clinrisk.capture.firehose_sink import FirehoseCaptureSink, secret_key

        if not (rules.firehose_stream and rules.id_key_secret_arn):
            return None  # the stack sets both; without them there is nowhere safe to capture to
        sink = FirehoseCaptureSink(client("firehose", settings.aws_region), rules.firehose_stream)
        key = secret_key(client("secretsmanager", settings.aws_region), rules.id_key_secret_arn)
    else:
        from clinrisk.capture.keys import local_key
        from clinrisk.capture.local_sink import ParquetCaptureSink

        sink = ParquetCaptureSink(settings.captures_root)
        key = local_key(settings.id_key_path)
    return Capturer(
        sink=sink,
        keyer=IdKeyer(key),
        task=rules.task,
        batch_records=rules.capture_batch_records,
        flush_seconds=rules.capture_flush_seconds,
        buffer_limit=rules.capture_buffer_limit,
    )


def _task_endpoint(settings: Settings, task: str) -> EndpointInvoker:
    invoker = build_endpoint_invoker(settings, task)
    if invoker is None:
        raise ConfigurationError("a task's endpoint is asked for outside the sagemaker serving mode")
    return invoker


def build_task_serving(
    settings: Settings, readmission: Serving, served: ServedTasks | None = None, *, on_endpoints: bool = False
) -> TaskServing:
    """Every task's serving beside readmission's (`readmission`, from `build_serving`): `served`, or the
    task files of `settings.tasks_dir`, each task's model followed through its own pointer in the same store.
    With `on_endpoints` (the predict function), the `sagemaker` serving mode scores each task on its own
    endpoint; the explain function scores in process, as it needs every factor's contribution."""
    from clinrisk.serving.tasks import TaskServing, served_tasks

    served = served or served_tasks(settings)
    endpoints: Callable[[str], EndpointInvoker] | None = None
    if on_endpoints and settings.sagemaker is not None:
        endpoints = functools.cache(functools.partial(_task_endpoint, settings))  # one client per task
    return TaskServing(settings, readmission.store, readmission, served.specs, served.unavailable, endpoints=endpoints)
