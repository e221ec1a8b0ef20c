"""Stand-in for an index that could not be opened when the explain function started (no
endpoint configured, unreadable files, credentials refused): every call raises
IndexUnavailableError with the reason, so each explanation degrades instead of the function
failing to start. The next cold start tries again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NoReturn

from clinrisk.explain.corpus import Chunk
from clinrisk.explain.ports import Hit, IndexUnavailableError
from clinrisk.explain.similar import SimilarPatients


@dataclass(frozen=True)
class UnavailableIndex:
    reason: str

    def _fail(self) -> NoReturn:
        raise IndexUnavailableError(self.reason)

    def doc_ids(self) -> set[str]:
        self._fail()

    def chunk_ids(self, doc_id: str) -> set[str]:
        self._fail()

    def put(self, chunks: Sequence[Chunk]) -> None:
        self._fail()

    def delete(self, chunk_ids: Collection[str]) -> None:
        self._fail()

    def search(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[Hit]:
        self._fail()

    def summarise(self, vector: Sequence[float], *, model_version: int, k: int) -> SimilarPatients:
        self._fail()
