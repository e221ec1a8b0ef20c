"""The knowledge corpus: markdown documents with front matter, chunked along their headings.

A document is `knowledge/<task>/<name>.md`:

    ---
    id: lace-index
    title: ...
    task: readmission
    source: a named, public guideline or paper
    url: https://...
    date: 2010-04-06
    factors: time_in_hospital, admission_type_id      (risk factors the document explains)
    ---
    # Heading
    ## Section
    text ...

Each section under a heading becomes one chunk that keeps its heading path ("The LACE index >
Length of stay"). A chunk's id is `<doc id>#<chunk number>-<content hash>`: the same text gets
the same id on every ingest, so re-ingesting writes nothing, and any edit gives new ids, so the
old chunks of a changed document can be found and removed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from clinrisk.errors import ClinriskError

DOC_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


class CorpusError(ClinriskError):
    """A knowledge document is malformed (front matter missing or invalid); the message names the
    document and the field."""


class DocumentMeta(BaseModel):
    """A document's front matter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DOC_ID_PATTERN)
    title: str = Field(min_length=1)
    task: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="The task it explains (a task file's name).")
    source: str = Field(min_length=10, description="A named, public guideline or paper.")
    url: HttpUrl
    date: date
    factors: tuple[str, ...] = Field(
        default=(), description="Risk factors (clinrisk.tasks.readmission.factors names) it explains."
    )

    @field_validator("factors", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class Chunk(BaseModel):
    """One passage: a section of a document with its heading path and provenance."""

    model_config = ConfigDict(frozen=True)

    id: str
    doc_id: str
    number: int = Field(ge=0)
    content_hash: str
    heading_path: tuple[str, ...]
    text: str
    title: str
    source: str
    url: str
    task: str
    factors: tuple[str, ...] = ()

    @property
    def searchable(self) -> str:
        """What is embedded and indexed: the heading path carries the topic of short sections."""
        return " > ".join(self.heading_path) + "\n" + self.text


class Document(BaseModel):
    model_config = ConfigDict(frozen=True)

    meta: DocumentMeta
    body: str

    def chunks(self) -> list[Chunk]:
        return [_chunk(self.meta, number, path, text) for number, (path, text) in enumerate(_sections(self.body))]


def parse_document(text: str, *, name: str) -> Document:
    """A document from its markdown text; `name` (file name or object key) only labels errors."""
    match = _FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if match is None:
        raise CorpusError(f"{name}: no front matter (a '---' block at the top)")
    fields: dict[str, str] = {}
    for line in match.group(1).splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise CorpusError(f"{name}: front matter line without 'key: value'")
        fields[key.strip()] = value.strip()
    try:
        meta = DocumentMeta.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise CorpusError(f"{name}: invalid front matter: {problems}") from None
    return Document(meta=meta, body=text.replace("\r\n", "\n")[match.end() :])


def load_directory(directory: Path) -> list[Document]:
    """Every `*.md` under `directory` (recursively), sorted by path; ids must be unique."""
    documents = [parse_document(p.read_text(encoding="utf-8"), name=str(p)) for p in sorted(directory.rglob("*.md"))]
    seen: dict[str, int] = {}
    for document in documents:
        seen[document.meta.id] = seen.get(document.meta.id, 0) + 1
    if duplicated := sorted(doc_id for doc_id, count in seen.items() if count > 1):
        raise CorpusError(f"{directory}: document ids used more than once: {', '.join(duplicated)}")
    return documents


def all_chunks(documents: Iterable[Document]) -> list[Chunk]:
    return [chunk for document in documents for chunk in document.chunks()]


def content_hash(heading_path: tuple[str, ...], text: str) -> str:
    return hashlib.sha256("\x1f".join((*heading_path, text)).encode()).hexdigest()[:16]


def _chunk(meta: DocumentMeta, number: int, path: tuple[str, ...], text: str) -> Chunk:
    digest = content_hash(path, text)
    return Chunk(
        id=f"{meta.id}#{number}-{digest}",
        doc_id=meta.id,
        number=number,
        content_hash=digest,
        heading_path=path,
        text=text,
        title=meta.title,
        source=meta.source,
        url=str(meta.url),
        task=meta.task,
        factors=meta.factors,
    )


def _sections(body: str) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, text) of each heading's own text, in order; headings without text are
    kept only in the paths of their sub-sections. Text before the first heading is a section
    with an empty path."""
    sections: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []

    def flush() -> None:
        text = " ".join(" ".join(lines).split())
        if text:
            sections.append((tuple(title for _, title in path), text))
        lines.clear()

    for line in body.splitlines():
        heading = _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        flush()
        level = len(heading.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level]
        path.append((level, heading.group(2)))
    flush()
    return sections
