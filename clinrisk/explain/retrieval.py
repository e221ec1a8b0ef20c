"""Hybrid retrieval: a dense (embedding) ranking and a BM25 ranking of the same passages, fused by
reciprocal rank fusion. RRF needs no score calibration between the two retrievers (cosine
similarities and BM25 scores live on unrelated scales), only ranks, which is why both the local
index and the OpenSearch adapter use it."""

from __future__ import annotations

import re
from collections.abc import Sequence

RRF_K = 60  # the constant of Cormack et al. (2009); damps the weight of the very first ranks
_WORD = re.compile(r"[a-z0-9]+")
# Words too common in this corpus and in factor queries to tell passages apart.
STOPWORDS = frozenset(
    _WORD.findall(
        """a an and are as at be by do does for from has have how in is it its of on or that the this to was were
        which with relate readmission readmitted risk patient patients hospital"""
    )
)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], *, k: int = RRF_K) -> list[tuple[str, float]]:
    """Ids by fused score Σ 1/(k + rank), best first; ties keep the order of first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def tokens(text: str) -> list[str]:
    """Lower-case words without stopwords, for BM25 (locally and in the OpenSearch analyzer's place)."""
    return [word for word in _WORD.findall(text.lower()) if word not in STOPWORDS]
