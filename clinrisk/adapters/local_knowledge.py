"""The local knowledge index: usearch for the dense side, bm25s for the lexical side, fused by RRF.

Why usearch: one small wheel (a single-file HNSW engine, numpy only), so `make install` and any
bundle stay light; it saves to one file and loads (or memory-maps) it back; it removes vectors by
key, which ingest needs to replace a changed document's chunks; and it is actively maintained.
faiss-cpu is heavier and its removal is awkward for HNSW; LanceDB brings pyarrow-based tables and
a storage engine that a corpus of a few hundred passages does not need.

The folder holds `chunks.jsonl` (the passages, the source of truth) and `vectors.usearch`; both
are replaced whole on every change (write to a temporary file, then rename), so a reader never
sees half an update. BM25 is rebuilt in memory from the passages, which takes milliseconds for a
corpus of this size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clinrisk.explain.corpus import Chunk
from clinrisk.explain.ports import Embedder, Hit
from clinrisk.explain.retrieval import reciprocal_rank_fusion, tokens

CHUNKS_FILE = "chunks.jsonl"
VECTORS_FILE = "vectors.usearch"
# Each retriever contributes this many candidates per wanted passage before fusion.
_CANDIDATES_PER_RESULT = 4


def chunk_key(chunk_id: str) -> int:
    """usearch keys are unsigned 64-bit integers: a stable one per chunk id."""
    return int.from_bytes(hashlib.sha256(chunk_id.encode()).digest()[:8], "big") >> 1


class LocalKnowledgeIndex:
    def __init__(self, root: Path, embedder: Embedder) -> None:
        self._root = root
        self._embedder = embedder
        self._lock = threading.Lock()
        self._chunks: dict[str, Chunk] = {}
        self._vectors: Any = None
        self._lexical: dict[str, tuple[Any, list[str]]] = {}
        self._load()

    # ------------------------------------------------------------------ ingest side

    def doc_ids(self) -> set[str]:
        return {chunk.doc_id for chunk in self._chunks.values()}

    def chunk_ids(self, doc_id: str) -> set[str]:
        return {chunk.id for chunk in self._chunks.values() if chunk.doc_id == doc_id}

    def put(self, chunks: Sequence[Chunk]) -> None:
        new = [c for c in chunks if c.id not in self._chunks]
        if not new:
            return
        vectors = self._embedder.embed([c.searchable for c in new])
        with self._lock:
            self._vectors.add(np.array([chunk_key(c.id) for c in new], dtype=np.uint64), vectors)
            self._chunks.update({c.id: c for c in new})
            self._lexical.clear()
            self._save()

    def delete(self, chunk_ids: Collection[str]) -> None:
        gone = [i for i in chunk_ids if i in self._chunks]
        if not gone:
            return
        with self._lock:
            for chunk_id in gone:
                self._vectors.remove(chunk_key(chunk_id))
                del self._chunks[chunk_id]
            self._lexical.clear()
            self._save()

    def __len__(self) -> int:
        return len(self._chunks)

    # ------------------------------------------------------------------ query side

    def search(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[Hit]:
        return self.hybrid(query, task=task, k=k, factor=factor)

    def hybrid(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[Hit]:
        rankings = [
            self.dense_ids(query, task=task, k=k, factor=factor),
            self.lexical_ids(query, task=task, k=k, factor=factor),
        ]
        return [Hit(self._chunks[i], score) for i, score in reciprocal_rank_fusion(rankings)[:k]]

    def dense_ids(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[str]:
        if not self._chunks:
            return []
        by_key = {chunk_key(i): i for i, c in self._chunks.items() if _wanted(c, task, factor)}
        # Exact search over every vector (a corpus of a few hundred passages), then the filter.
        matches = self._vectors.search(self._embedder.embed([query])[0], len(self._chunks), exact=True)
        ranked = [by_key[int(key)] for key in matches.keys if int(key) in by_key]
        return ranked[: k * _CANDIDATES_PER_RESULT]

    def lexical_ids(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[str]:
        retriever, ids = self._bm25(task)
        query_tokens = tokens(query)
        if not ids or not query_tokens:
            return []
        results, scores = retriever.retrieve([query_tokens], k=len(ids), show_progress=False)
        ranked = [ids[int(doc)] for doc, score in zip(results[0], scores[0], strict=True) if score > 0]
        return [i for i in ranked if _wanted(self._chunks[i], task, factor)][: k * _CANDIDATES_PER_RESULT]

    def _bm25(self, task: str) -> tuple[Any, list[str]]:
        with self._lock:
            if task not in self._lexical:
                import bm25s

                logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
                chunks = sorted((c for c in self._chunks.values() if c.task == task), key=lambda c: c.id)
                retriever = bm25s.BM25()
                if chunks:
                    retriever.index([tokens(c.searchable) for c in chunks], show_progress=False)
                self._lexical[task] = (retriever, [c.id for c in chunks])
            return self._lexical[task]

    # ------------------------------------------------------------------ files

    def _load(self) -> None:
        from usearch.index import Index

        self._vectors = Index(ndim=self._embedder.dimensions, metric="cos", dtype="f32")
        chunks_path = self._root / CHUNKS_FILE
        if chunks_path.is_file():
            lines = chunks_path.read_text(encoding="utf-8").splitlines()
            self._chunks = {c.id: c for c in (Chunk.model_validate_json(line) for line in lines if line)}
            self._vectors.load(str(self._root / VECTORS_FILE))

    def _save(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        vectors_tmp = _temporary(self._root, VECTORS_FILE)
        self._vectors.save(str(vectors_tmp))
        chunks_tmp = _temporary(self._root, CHUNKS_FILE)
        chunks_tmp.write_text(
            "".join(c.model_dump_json() + "\n" for c in sorted(self._chunks.values(), key=lambda c: c.id)),
            encoding="utf-8",
        )
        vectors_tmp.replace(self._root / VECTORS_FILE)
        chunks_tmp.replace(self._root / CHUNKS_FILE)


def _wanted(chunk: Chunk, task: str, factor: str | None) -> bool:
    return chunk.task == task and (factor is None or factor in chunk.factors)


def _temporary(directory: Path, name: str) -> Path:
    handle, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    os.close(handle)
    return Path(path)
