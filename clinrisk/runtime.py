"""Wiring: the one place that assembles objects. The settings pick the adapter behind each port.

Everything below `clinrisk.runtime` takes its ports as parameters; the CLI, the local API and the
Lambda handlers call these builders once per process. Adapters are imported inside the builders,
so a process loads only its backend's (boto3 only on the aws backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinrisk.errors import ClinriskError, ConfigurationError
from clinrisk.pipeline.contracts import Ports
from clinrisk.ports import EndpointDeployer, EndpointInvoker, ObjectStore
from clinrisk.registry.model_registry import Registry
from clinrisk.serving.endpoint_deployment import EndpointPublisher
from clinrisk.settings import Settings

# Imported where used, so that each Lambda loads only what its bundle holds: the promote bundle,
# which builds the ports, has no numpy, which scoring needs.
if TYPE_CHECKING:
    from clinrisk.adapters.local_endpoint import LocalEndpoint
    from clinrisk.batch.cloud import BatchPorts, BatchSettings
    from clinrisk.serving.prediction import Serving


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

        return SageMakerEndpointInvoker.from_settings(settings.sagemaker, region=settings.aws_region)
    return _local_endpoint(settings, build_store(settings))


def build_serving(settings: Settings) -> Serving:
    """What answers the prediction API: the endpoint in the `sagemaker` serving mode, else a model
    holder that follows the serving pointer."""
    from clinrisk.serving.model_holder import ModelHolder
    from clinrisk.serving.prediction import Serving
    from clinrisk.serving.scoring import Bands

    store = build_store(settings)
    endpoint = build_endpoint_invoker(settings)
    holder = None if endpoint else ModelHolder(store, check_seconds=settings.serving.pointer_check_seconds)
    return Serving(settings, Bands.from_settings(settings), store, holder, endpoint)


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


def _local_endpoint(settings: Settings, store: ObjectStore) -> LocalEndpoint:
    from clinrisk.adapters.local_endpoint import LocalEndpoint

    name = settings.sagemaker.endpoint_name if settings.sagemaker else "clinrisk-local"
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
            publish=endpoint_publisher(settings, store),
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
            publish=endpoint_publisher(settings, store),
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
    )
