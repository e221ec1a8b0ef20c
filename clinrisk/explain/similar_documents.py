"""The similar-patient documents of one model version: a model artefact written by the training job
and only read at promotion.

The training job already holds the training encounters, numpy and the trained model, so it computes
each encounter's vector there (per-factor SHAP contributions, `clinrisk.explain.similar_index`) and
writes `similar_patients.jsonl.gz` into the model directory. The file is then part of the registered
version: covered by its checksum, unpacked with it by the evaluate stage, and immutable. Promotion
reads it back with the standard library alone (the promote Lambda has no numpy) and loads it into
the similar-patient index of its backend.

Layout: gzip'd JSON lines. The first line is a header (format, dimensions, rows, the factor names
in vector order, the field names: the task's coded summary fields); each further line is one encounter:
`{"vector": [...], "outcome": 0|1, "<field>": "<code>", ...}`. Nothing else of the record is kept:
no identifier, no value as entered, only the coded fields the aggregates report.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from clinrisk.errors import ClinriskError

SIMILAR_FILE = "similar_patients.jsonl.gz"
FORMAT = "clinrisk.similar-patients/1"
_DECIMALS = 5  # log-odds to 1e-5: far below any distance that separates two neighbours


class SimilarDocumentsError(ClinriskError):
    """A model's similar-patient documents are missing or do not match their header."""


class SimilarHeader(BaseModel):
    format: str = FORMAT
    dimensions: int = Field(ge=1)
    rows: int = Field(ge=0)
    factors: list[str]
    fields: list[str]
    digest: str = Field(description="sha256 of the document lines: which load of a version is in an index.")


@dataclass(frozen=True)
class SimilarDocument:
    vector: list[float]
    outcome: int  # 1 = the outcome happened (readmitted within 30 days)
    fields: dict[str, str]


def write_documents(directory: Path, *, factors: Sequence[str], documents: Iterable[SimilarDocument]) -> SimilarHeader:
    """Write `SIMILAR_FILE` into `directory` (the model directory); returns its header."""
    documents = list(documents)
    lines = [_line(document) for document in documents]
    header = SimilarHeader(
        dimensions=len(factors),
        rows=len(lines),
        factors=list(factors),
        fields=list(documents[0].fields) if documents else [],
        digest=_digest(lines),
    )
    for line in lines[:1]:
        _check_line(header, json.loads(line))
    # mtime=0: the same documents give the same bytes, so the model directory's checksum is reproducible.
    with (directory / SIMILAR_FILE).open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write((header.model_dump_json() + "\n").encode())
        for line in lines:
            out.write((line + "\n").encode())
    return header


class SimilarDocuments:
    """The documents of one model directory, read lazily line by line (a Lambda's memory holds the
    header and one bulk batch, not the whole file). Iterating checks every line against the header
    and, at the end, the count and digest: a truncated or edited file raises instead of loading."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / SIMILAR_FILE
        if not self.path.is_file():
            raise SimilarDocumentsError(f"the model directory has no {SIMILAR_FILE}; retrain to index it")
        with gzip.open(self.path, "rt", encoding="utf-8") as lines:
            self.header = _header(lines.readline())

    def __iter__(self) -> Iterator[SimilarDocument]:
        digest, count = hashlib.sha256(), 0
        with gzip.open(self.path, "rt", encoding="utf-8") as lines:
            lines.readline()
            for line in lines:
                digest.update(line.rstrip("\n").encode())
                digest.update(b"\n")
                count += 1
                yield _document(self.header, json.loads(line))
        if count != self.header.rows or digest.hexdigest() != self.header.digest:
            raise SimilarDocumentsError(
                f"{SIMILAR_FILE} does not match its header ({count} of {self.header.rows} rows)"
            )


def _line(document: SimilarDocument) -> str:
    row: dict[str, Any] = {
        "vector": [round(float(x), _DECIMALS) for x in document.vector],
        "outcome": int(document.outcome),
    }
    return json.dumps(row | document.fields, separators=(",", ":"))


def _digest(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _header(line: str) -> SimilarHeader:
    try:
        header = SimilarHeader.model_validate_json(line)
    except ValueError:
        raise SimilarDocumentsError(f"{SIMILAR_FILE} has no valid header") from None
    if (
        header.format != FORMAT
        or header.dimensions != len(header.factors)
        or len(set(header.fields)) != len(header.fields)
    ):
        raise SimilarDocumentsError(f"{SIMILAR_FILE} is format {header.format!r}, not {FORMAT!r}, or its fields repeat")
    return header


def _check_line(header: SimilarHeader, row: Mapping[str, Any]) -> None:
    vector, outcome = row.get("vector"), row.get("outcome")
    if not isinstance(vector, list) or len(vector) != header.dimensions or outcome not in (0, 1):
        raise SimilarDocumentsError(f"a {SIMILAR_FILE} line has no {header.dimensions}-d vector or 0/1 outcome")
    if not all(isinstance(row.get(name), str) for name in header.fields):
        raise SimilarDocumentsError(f"a {SIMILAR_FILE} line lacks one of the fields {header.fields}")


def _document(header: SimilarHeader, row: Mapping[str, Any]) -> SimilarDocument:
    _check_line(header, row)
    return SimilarDocument(
        vector=[float(x) for x in row["vector"]],
        outcome=int(row["outcome"]),
        fields={name: str(row[name]) for name in header.fields},
    )
