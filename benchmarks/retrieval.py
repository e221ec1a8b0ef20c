"""Retrieval quality and ingest speed of the local knowledge index, as JSON.

    .venv/bin/python benchmarks/retrieval.py

Ingests knowledge/readmission into a fresh index (timing chunks per second: chunking, wordllama
embedding, usearch and files), then runs the labelled queries of
benchmarks/data/retrieval_queries_readmission.json through dense only, BM25 only, and the hybrid
(RRF) that explanations use. Factor queries are built by the explain flow's own `factor_query` and,
as in explain, searched only among passages of documents that list the factor in their front
matter; `hybrid_without_factor_filter` shows the hybrid without that filter.

recall@5 = mean over queries of |relevant ∩ top 5| / min(|relevant|, 5); hit@5 = share of queries
with a relevant passage in the top 5; MRR = mean of 1/rank of the first relevant passage (top 10).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinrisk.adapters.local_embeddings import WORDLLAMA_ID, WordLlamaEmbedder
from clinrisk.adapters.local_knowledge import LocalKnowledgeIndex
from clinrisk.explain.corpus import load_directory
from clinrisk.explain.ingest import sync
from clinrisk.explain.service import TASK, factor_query
from clinrisk.serving.scoring import RiskFactor

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / "benchmarks" / "data" / "retrieval_queries_readmission.json"
K = 5
MRR_DEPTH = 10


def factor_of(item: dict[str, Any]) -> str | None:
    """Factor queries are filtered to the documents that explain the factor, as explain does."""
    return str(item["factor"]) if item["kind"] == "factor" else None


def query_text(item: dict[str, Any]) -> str:
    if item["kind"] == "factor":
        factor = RiskFactor(
            factor=item["factor"], label=item["label"], value=item["value"], contribution=0.1, direction="increases"
        )
        return factor_query(factor)
    return str(item["query"])


def label(chunk_id: str) -> str:
    """`lace-index#1-<hash>` → `lace-index#1`, the labels' form."""
    return chunk_id.rsplit("-", 1)[0]


def scores(ranked: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    recall = [len(set(r[:K]) & rel) / min(len(rel), K) for r, rel in zip(ranked, relevant, strict=True)]
    hits = [bool(set(r[:K]) & rel) for r, rel in zip(ranked, relevant, strict=True)]
    reciprocal = [
        next((1.0 / (i + 1) for i, x in enumerate(r[:MRR_DEPTH]) if x in rel), 0.0)
        for r, rel in zip(ranked, relevant, strict=True)
    ]
    n = len(ranked)
    return {
        f"recall@{K}": round(sum(recall) / n, 4),
        f"hit@{K}": round(sum(hits) / n, 4),
        "mrr": round(sum(reciprocal) / n, 4),
    }


def main() -> None:
    labelled = json.loads(QUERIES.read_text())["queries"]
    documents = load_directory(ROOT / "knowledge" / TASK)
    embedder = WordLlamaEmbedder()
    embedder.embed(["warm-up"])  # the model load is not ingest work
    with tempfile.TemporaryDirectory() as scratch:
        index = LocalKnowledgeIndex(Path(scratch), embedder)
        started = time.perf_counter()
        results = sync(documents, index)
        ingest_seconds = time.perf_counter() - started
        chunks = sum(r.written for r in results)
        retrievers: dict[str, Callable[[str, str | None], list[str]]] = {
            "dense": lambda q, f: index.dense_ids(q, task=TASK, k=MRR_DEPTH, factor=f),
            "bm25": lambda q, f: index.lexical_ids(q, task=TASK, k=MRR_DEPTH, factor=f),
            "hybrid": lambda q, f: [h.chunk.id for h in index.hybrid(q, task=TASK, k=MRR_DEPTH, factor=f)],
            "hybrid_without_factor_filter": lambda q, f: [h.chunk.id for h in index.hybrid(q, task=TASK, k=MRR_DEPTH)],
        }
        relevant = [set(item["relevant"]) for item in labelled]
        report: dict[str, Any] = {}
        for name, retrieve in retrievers.items():
            ranked = [[label(i) for i in retrieve(query_text(item), factor_of(item))] for item in labelled]
            report[name] = scores(ranked, relevant)
            for kind in ("factor", "free"):
                picked = [i for i, item in enumerate(labelled) if item["kind"] == kind]
                report[name][kind] = scores([ranked[i] for i in picked], [relevant[i] for i in picked])
        again = time.perf_counter()
        sync(documents, index)
        reingest_seconds = time.perf_counter() - again
    print(
        json.dumps(
            {
                "queries": len(labelled),
                "factor_queries": sum(item["kind"] == "factor" for item in labelled),
                "free_text_queries": sum(item["kind"] == "free" for item in labelled),
                "embedding": WORDLLAMA_ID,
                "retrieval": report,
                "ingest": {
                    "documents": len(documents),
                    "chunks": chunks,
                    "seconds": round(ingest_seconds, 4),
                    "chunks_per_second": round(chunks / ingest_seconds, 1),
                    "reingest_unchanged_seconds": round(reingest_seconds, 4),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
