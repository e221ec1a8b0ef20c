"""The ports: what the domain needs from the cloud, as small interfaces.

Each has a local adapter (`clinrisk.adapters.local`) and an AWS adapter
(`clinrisk.adapters.aws`); `clinrisk.runtime.build_ports` picks them from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clinrisk.errors import ClinriskError


class ObjectNotFoundError(ClinriskError):
    """The object store has no object under that key."""


class StoreUnavailableError(ClinriskError):
    """The object store could not be reached or refused the request."""


class ObjectStore(Protocol):
    """Keys are '/'-separated paths. A write replaces the object whole: a reader sees the old
    bytes or the new bytes, never a mix."""

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def upload_dir(self, directory: Path, prefix: str) -> None: ...

    def download_dir(self, prefix: str, directory: Path) -> None: ...

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class TrainingJob:
    """One training run under the SageMaker script-mode contract. Channels, model and output
    are object-store prefixes, as S3 prefixes are for a SageMaker training job."""

    name: str
    channels: dict[str, str]
    model_prefix: str
    output_prefix: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)


class TrainingFailedError(ClinriskError):
    """The training job ended without a model; the message carries its failure reason."""


class Trainer(Protocol):
    def train(self, job: TrainingJob) -> None: ...


class Notifier(Protocol):
    def publish(self, subject: str, message: dict[str, Any]) -> None: ...


class EndpointUnavailableError(ClinriskError):
    """The model endpoint could not answer now (not deployed yet, throttled, unreachable); the
    caller may retry later."""


class EndpointFailedError(ClinriskError):
    """The model endpoint answered with an error, or with something that is not an answer."""


class EndpointBusyError(ClinriskError):
    """The endpoint cannot take a new deployment now (it is being created, updated or deleted)."""


class EndpointInvoker(Protocol):
    """The `sagemaker` serving mode's endpoint, as the predict function calls it."""

    def invoke(self, body: bytes) -> bytes: ...


class EndpointDeployer(Protocol):
    """Points the endpoint at one version's model archive (its URI in the artifacts store).
    Returns once the change is accepted; the endpoint may take minutes to serve it."""

    def deploy(self, *, model_data_url: str, deployment_name: str) -> None: ...


class CaptureSink(Protocol):
    """Where captured prediction rows go (`clinrisk.capture.records`): Firehose, or local Parquet."""

    def put(self, rows: list[dict[str, Any]]) -> None: ...
