"""The explanation ports: the knowledge index, the similar-patient index, the embedder and the
narrative writer, each with a local adapter (embedded engines, the deterministic writer) and an AWS
adapter (OpenSearch Serverless, Bedrock); `clinrisk.runtime.build_explainer` picks them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from clinrisk.errors import ClinriskError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from clinrisk.explain.brief import Brief
    from clinrisk.explain.corpus import Chunk
    from clinrisk.explain.similar import SimilarPatients
    from clinrisk.explain.similar_documents import SimilarDocuments


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


class LoadableSimilarIndex(SimilarPatientIndex, Protocol):
    """A similar-patient index that promotion loads a champion's documents into, under its version.
    Loading a version already loaded (the same documents: a rollback) writes nothing."""

    def load(self, version: int, documents: SimilarDocuments) -> None: ...


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
