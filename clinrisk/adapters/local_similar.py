"""The local similar-patient index: one usearch HNSW index per champion version on disk, with the
outcomes and coded fields beside it. It answers aggregates only (`clinrisk.explain.similar`).

HNSW (not exact search) because the index holds every training encounter (100,000 and more)
and a query must stay within a few milliseconds; the vectors are 28 log-odds contributions, so
squared Euclidean distance needs no scaling.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clinrisk.explain.ports import IndexUnavailableError
from clinrisk.explain.similar import SimilarPatients, summarise
from clinrisk.explain.similar_documents import SimilarDocuments
from clinrisk.explain.similar_index import SimilarRows

VECTORS_FILE = "vectors.usearch"
ROWS_FILE = "rows.npz"
DIGEST_FILE = "documents.sha256"  # which documents the version's index was built from


class LocalSimilarPatientIndex:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._loaded: dict[int, tuple[Any, dict[str, np.ndarray]]] = {}

    def load(self, version: int, documents: SimilarDocuments) -> None:
        """Build the version's index from its documents, unless it was built from these already."""
        marker = self._root / f"v{version}" / DIGEST_FILE
        if marker.is_file() and marker.read_text() == documents.header.digest:
            return
        self.write(version, SimilarRows.from_documents(list(documents), dimensions=documents.header.dimensions))
        marker.write_text(documents.header.digest)

    def write(self, version: int, rows: SimilarRows) -> None:
        from usearch.index import Index

        directory = self._root / f"v{version}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / DIGEST_FILE).unlink(missing_ok=True)
        index = Index(ndim=rows.vectors.shape[1], metric="l2sq", dtype="f32", connectivity=16, expansion_add=128)
        index.add(np.arange(len(rows.outcomes), dtype=np.uint64), rows.vectors)
        index.save(str(directory / VECTORS_FILE))
        arrays: dict[str, np.ndarray] = {"outcomes": rows.outcomes, **rows.fields}
        np.savez(directory / ROWS_FILE, **arrays)  # type: ignore[arg-type]
        with self._lock:
            self._loaded.pop(version, None)

    def summarise(self, vector: Sequence[float], *, model_version: int, k: int) -> SimilarPatients:
        index, rows = self._load(model_version)
        matches = index.search(np.asarray(vector, dtype=np.float32), k)
        keys = np.asarray(matches.keys, dtype=np.int64)
        fields = {name: [str(v) for v in values[keys]] for name, values in rows.items() if name != "outcomes"}
        return summarise([int(o) for o in rows["outcomes"][keys]], fields, model_version=model_version)

    def _load(self, version: int) -> tuple[Any, dict[str, np.ndarray]]:
        with self._lock:
            if version not in self._loaded:
                from usearch.index import Index

                directory = self._root / f"v{version}"
                if not (directory / VECTORS_FILE).is_file():
                    raise IndexUnavailableError(f"no similar-patient index for model version {version}")
                index = Index.restore(str(directory / VECTORS_FILE), view=True)
                with np.load(directory / ROWS_FILE) as stored:
                    rows = {name: stored[name] for name in stored.files}
                self._loaded[version] = (index, rows)
            return self._loaded[version]
