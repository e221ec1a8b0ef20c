"""Wiring: the settings pick the adapters behind each port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clinrisk.endpoint_deployment import EndpointPublisher
from clinrisk.ports import EndpointDeployer, EndpointInvoker, Notifier, ObjectStore, Trainer
from clinrisk.registry import Registry
from clinrisk.settings import Settings

if TYPE_CHECKING:
    from clinrisk.adapters.local_endpoint import LocalEndpoint
    from clinrisk.monitoring.capture import Capturer


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
            publish=endpoint_publisher(settings, store),
        ),
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
    from clinrisk.monitoring.capture import Capturer
    from clinrisk.monitoring.keys import IdKeyer
    from clinrisk.ports import CaptureSink

    sink: CaptureSink
    if settings.backend == "aws":
        from clinrisk.adapters.aws import _client
        from clinrisk.monitoring.aws_capture import FirehoseCaptureSink, secret_key

        if not (rules.firehose_stream and rules.id_key_secret_arn):
            return None  # the stack sets both; without them there is nowhere safe to capture to
        sink = FirehoseCaptureSink(_client("firehose", settings.aws_region), rules.firehose_stream)
        key = secret_key(_client("secretsmanager", settings.aws_region), rules.id_key_secret_arn)
    else:
        from clinrisk.monitoring.keys import local_key
        from clinrisk.monitoring.local_sink import ParquetCaptureSink

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
