"""The ports: what the domain needs from the cloud, as small interfaces.

Each has a local adapter (`clinrisk.adapters.local`) and an AWS adapter
(`clinrisk.adapters.aws`); `clinrisk.runtime.build_ports` picks them from the settings.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from clinrisk.errors import ClinriskError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from clinrisk.explain.brief import Brief
    from clinrisk.explain.corpus import Chunk
    from clinrisk.explain.similar import SimilarPatients


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


# --------------------------------------------------------------------------- explanations (issue 13)


class IndexUnavailableError(ClinriskError):
    """A knowledge or similar-patient index could not be reached, or has not been built yet."""


class GenerationUnavailableError(ClinriskError):
    """The text generator could not answer now (throttled, timed out, unreachable)."""


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float


class Embedder(Protocol):
    """Text to unit-length vectors (rows), one per text."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class KnowledgeIndex(Protocol):
    """The knowledge passages of every task. Chunk ids are deterministic (`clinrisk.explain.corpus`),
    so ingest compares ids, writes only new chunks and deletes only stale ones."""

    def doc_ids(self) -> set[str]: ...

    def chunk_ids(self, doc_id: str) -> set[str]: ...

    def put(self, chunks: Sequence[Chunk]) -> None: ...

    def delete(self, chunk_ids: Collection[str]) -> None: ...

    def search(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[Hit]:
        """Hybrid search within `task`; with `factor`, only passages of documents that explain it."""
        ...


class SimilarPatientIndex(Protocol):
    """The champion's training encounters by model-defined vector; answers aggregates only."""

    def summarise(self, vector: Sequence[float], *, model_version: int, k: int) -> SimilarPatients: ...


GuardrailAction = Literal["NONE", "INTERVENED", "NOT_APPLIED"]


@dataclass(frozen=True)
class Draft:
    """A narrative as its writer returned it, before verification."""

    text: str
    model_id: str
    guardrail_action: GuardrailAction


class NarrativeWriter(Protocol):
    """Writes the narrative from a brief within `timeout` seconds; raises GenerationUnavailableError."""

    @property
    def model_id(self) -> str: ...

    def write(self, brief: Brief, *, timeout: float) -> Draft: ...
