"""Ingest: make the knowledge index hold exactly the chunks of the current documents.

Chunk ids are deterministic, so ingest compares ids: it writes only chunks the index does not
hold, then deletes the document's chunks that the new text no longer has. Ingesting the same
document again writes nothing; a changed document replaces its old chunks (new ones first, so
the document is never missing from search); a removed document removes them. A document's id is
its file name without `.md`, which is how a removal event (which has only the object key) finds
the chunks to delete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from clinrisk.explain.corpus import CorpusError, Document, parse_document
from clinrisk.explain.ports import KnowledgeIndex
from clinrisk.ports import ObjectNotFoundError

DOCUMENT_SUFFIX = ".md"


@dataclass(frozen=True)
class IngestResult:
    doc_id: str
    written: int
    deleted: int
    unchanged: int


def doc_id_of_key(key: str) -> str:
    """`readmission/lace-index.md` → `lace-index`."""
    path = PurePosixPath(key)
    if path.suffix != DOCUMENT_SUFFIX:
        raise CorpusError(f"{key}: not a knowledge document (expected a {DOCUMENT_SUFFIX} file)")
    return path.stem


def parse_object(key: str, body: bytes) -> Document:
    """A document from an object (or file) and its key; the front matter id must be the file name."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CorpusError(f"{key}: not UTF-8 text") from None
    document = parse_document(text, name=key)
    if document.meta.id != doc_id_of_key(key):
        raise CorpusError(f"{key}: front matter id {document.meta.id!r} is not the file name")
    return document


def ingest_document(document: Document, index: KnowledgeIndex) -> IngestResult:
    chunks = document.chunks()
    existing = index.chunk_ids(document.meta.id)
    new = [c for c in chunks if c.id not in existing]
    stale = existing - {c.id for c in chunks}
    index.put(new)
    index.delete(stale)
    return IngestResult(document.meta.id, written=len(new), deleted=len(stale), unchanged=len(chunks) - len(new))


def remove_document(doc_id: str, index: KnowledgeIndex) -> IngestResult:
    stale = index.chunk_ids(doc_id)
    index.delete(stale)
    return IngestResult(doc_id, written=0, deleted=len(stale), unchanged=0)


def sync(
    documents: Sequence[Document],
    index: KnowledgeIndex,
    *,
    prune: bool = True,
    advance: Callable[[int], None] = lambda _: None,
) -> list[IngestResult]:
    """Ingest `documents`; with `prune`, remove indexed documents that are not among them.
    `advance(n)` is called with each document's chunk count (a progress bar's step)."""
    results = []
    for document in documents:
        results.append(ingest_document(document, index))
        advance(len(document.chunks()))
    if prune:
        keep = {d.meta.id for d in documents}
        results += [remove_document(doc_id, index) for doc_id in sorted(index.doc_ids() - keep)]
    return results


@dataclass(frozen=True)
class ObjectChange:
    """An object put into, or removed from, the knowledge bucket (one S3 event record)."""

    bucket: str
    key: str
    change: Literal["created", "removed"]


def apply_change(change: ObjectChange, *, read: Callable[[str, str], bytes], index: KnowledgeIndex) -> IngestResult:
    """Bring the index in line with the object as it is now. A created object that is already gone
    (removed again before its event was handled) counts as removed: events may arrive late or
    out of order, and the current state of the bucket is what the index must hold."""
    doc_id = doc_id_of_key(change.key)
    if change.change == "removed":
        return remove_document(doc_id, index)
    try:
        body = read(change.bucket, change.key)
    except ObjectNotFoundError:
        return remove_document(doc_id, index)
    return ingest_document(parse_object(change.key, body), index)
