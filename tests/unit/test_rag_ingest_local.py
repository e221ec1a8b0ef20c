"""Chunking along headings, deterministic ids, and ingest that writes only what changed, on the
real local index (usearch + wordllama + bm25s) in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinrisk.adapters.local_embeddings import WordLlamaEmbedder
from clinrisk.adapters.local_knowledge import LocalKnowledgeIndex
from clinrisk.explain.corpus import CorpusError, parse_document
from clinrisk.explain.ingest import ingest_document, parse_object, remove_document, sync

FRONT = (
    "---\nid: {id}\ntitle: A test document\ntask: readmission\nsource: A named test guideline, 2020\n"
    "url: https://example.org/guideline\ndate: 2020-01-01\nfactors: insulin\n---\n"
)
BODY = (
    "# Top\n\n## Insulin\nInsulin changes in hospital.\n\n### Detail\nMore about insulin.\n\n## Sodium\nLow sodium.\n"
)


def document(doc_id: str = "test-doc", body: str = BODY) -> str:
    return FRONT.format(id=doc_id) + body


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


@pytest.fixture
def index(tmp_path: Path, embedder: WordLlamaEmbedder) -> LocalKnowledgeIndex:
    return LocalKnowledgeIndex(tmp_path / "knowledge", embedder)


def test_chunks_follow_headings_and_keep_their_path() -> None:
    chunks = parse_document(document(), name="test-doc.md").chunks()
    assert [c.heading_path for c in chunks] == [
        ("Top", "Insulin"),
        ("Top", "Insulin", "Detail"),
        ("Top", "Sodium"),
    ]
    assert chunks[1].text == "More about insulin."
    assert [c.number for c in chunks] == [0, 1, 2]


def test_ids_are_document_number_and_content_hash() -> None:
    first = parse_document(document(), name="a.md").chunks()
    again = parse_document(document(), name="a.md").chunks()
    edited = parse_document(document(body=BODY.replace("Low sodium.", "Low sodium at discharge.")), name="a.md")
    assert [c.id for c in first] == [c.id for c in again]
    assert first[0].id.startswith("test-doc#0-") and len(first[0].content_hash) == 16
    assert [c.id for c in edited.chunks()][:2] == [c.id for c in first][:2]
    assert edited.chunks()[2].id != first[2].id


def test_ingesting_again_writes_nothing(index: LocalKnowledgeIndex, tmp_path: Path) -> None:
    doc = parse_object("readmission/test-doc.md", document().encode())
    assert ingest_document(doc, index).written == 3
    vectors = tmp_path / "knowledge" / "vectors.usearch"
    before = vectors.stat().st_mtime_ns
    result = ingest_document(doc, index)
    assert (result.written, result.deleted, result.unchanged) == (0, 0, 3)
    assert vectors.stat().st_mtime_ns == before, "an unchanged document rewrote the index"


def test_a_changed_document_replaces_its_old_chunks(index: LocalKnowledgeIndex) -> None:
    ingest_document(parse_object("r/test-doc.md", document().encode()), index)
    old = index.chunk_ids("test-doc")
    changed = parse_object("r/test-doc.md", document(body=BODY.replace("Low sodium.", "Hyponatraemia.")).encode())
    result = ingest_document(changed, index)
    assert (result.written, result.deleted, result.unchanged) == (1, 1, 2)
    assert index.chunk_ids("test-doc") == {c.id for c in changed.chunks()} != old
    assert [h.chunk.text for h in index.search("hyponatraemia", task="readmission", k=1)] == ["Hyponatraemia."]


def test_a_removed_document_removes_its_chunks_and_survives_a_reload(
    index: LocalKnowledgeIndex, tmp_path: Path, embedder: WordLlamaEmbedder
) -> None:
    sync(
        [parse_object("r/test-doc.md", document().encode()), parse_object("r/other.md", document("other").encode())],
        index,
    )
    assert remove_document("test-doc", index).deleted == 3
    reloaded = LocalKnowledgeIndex(tmp_path / "knowledge", embedder)
    assert reloaded.doc_ids() == {"other"}
    assert {h.chunk.doc_id for h in reloaded.search("insulin", task="readmission", k=5)} == {"other"}


def test_sync_prunes_documents_no_longer_in_the_folder(index: LocalKnowledgeIndex) -> None:
    sync(
        [parse_object("r/test-doc.md", document().encode()), parse_object("r/other.md", document("other").encode())],
        index,
    )
    results = sync([parse_object("r/other.md", document("other").encode())], index)
    assert index.doc_ids() == {"other"}
    assert [(r.doc_id, r.deleted) for r in results] == [("other", 0), ("test-doc", 3)]


def test_the_front_matter_id_must_be_the_file_name() -> None:
    with pytest.raises(CorpusError, match="file name"):
        parse_object("readmission/another-name.md", document().encode())


def test_the_embedding_model_loads_from_its_wheel_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: the weights and tokenizer must come from the package."""
    import socket

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the embedding model tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    vectors = WordLlamaEmbedder().embed(["insulin changed in hospital", "length of stay"])
    assert vectors.shape == (2, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
