"""The knowledge corpus in the repository: valid front matter with named public sources, and every
risk factor the model can report explained by at least one passage that retrieval finds for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinrisk.adapters.local_embeddings import WordLlamaEmbedder
from clinrisk.adapters.local_knowledge import LocalKnowledgeIndex
from clinrisk.explain.corpus import CorpusError, Document, load_directory, parse_document
from clinrisk.explain.ingest import doc_id_of_key, sync
from clinrisk.explain.service import TASK, factor_query
from clinrisk.serving.scoring import RiskFactor
from clinrisk.tasks.readmission.factors import FACTORS

KNOWLEDGE = Path(__file__).resolve().parents[2] / "knowledge"
REQUIRED_TOPICS = {
    "lace-index",
    "hospital-score",
    "hba1c-strack-2014",
    "discharge-transitional-care",
    "medications-insulin",
    "prior-utilisation",
    "diagnosis-groups",
    "age",
}


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return load_directory(KNOWLEDGE / TASK)


@pytest.fixture(scope="module")
def index(documents: list[Document], tmp_path_factory: pytest.TempPathFactory) -> LocalKnowledgeIndex:
    knowledge = LocalKnowledgeIndex(tmp_path_factory.mktemp("knowledge"), WordLlamaEmbedder())
    sync(documents, knowledge)
    return knowledge


def test_documents_name_a_public_source_and_cover_the_topics(documents: list[Document]) -> None:
    assert {d.meta.id for d in documents} >= REQUIRED_TOPICS
    for document in documents:
        assert document.meta.task == TASK
        assert document.meta.url.scheme == "https"
        assert document.meta.id == doc_id_of_key(f"{TASK}/{document.meta.id}.md")
        assert (KNOWLEDGE / TASK / f"{document.meta.id}.md").is_file()
        assert len(document.chunks()) >= 3, document.meta.id


def test_every_factor_is_named_by_a_document(documents: list[Document]) -> None:
    named = {factor for d in documents for factor in d.meta.factors}
    assert {f.name for f in FACTORS} <= named
    assert named <= {f.name for f in FACTORS}, "a document names a factor the model does not have"


@pytest.mark.parametrize("factor", FACTORS, ids=lambda f: f.name)
def test_every_factor_retrieves_a_passage_that_explains_it(index: LocalKnowledgeIndex, factor: object) -> None:
    """The explain flow's own query for the factor finds, in its top 5, a passage of a document
    that lists the factor."""
    name, label = factor.name, factor.label  # type: ignore[attr-defined]
    query = factor_query(RiskFactor(factor=name, label=label, value="x", contribution=0.1, direction="increases"))
    hits = index.search(query, task=TASK, k=5)
    assert any(name in hit.chunk.factors for hit in hits), [h.chunk.id for h in hits]


def test_a_document_without_a_source_is_refused() -> None:
    text = "---\nid: x\ntitle: T\ntask: readmission\nurl: https://example.org\ndate: 2020-01-01\n---\n# A\ntext\n"
    with pytest.raises(CorpusError, match="source"):
        parse_document(text, name="x.md")


def test_a_document_without_front_matter_is_refused() -> None:
    with pytest.raises(CorpusError, match="front matter"):
        parse_document("# A\ntext\n", name="x.md")


def test_the_labelled_retrieval_queries_name_real_passages(documents: list[Document]) -> None:
    """benchmarks/retrieval.py scores against these labels: a label that names no passage would
    make a query impossible to answer and the figure meaningless."""
    import json

    labelled = json.loads((KNOWLEDGE.parent / "benchmarks/data/retrieval_queries_readmission.json").read_text())
    queries = labelled["queries"]
    passages = {f"{c.doc_id}#{c.number}" for d in documents for c in d.chunks()}
    assert len(queries) >= 60
    assert {q["kind"] for q in queries} == {"factor", "free"}
    for query in queries:
        assert query["relevant"] and set(query["relevant"]) <= passages, query
        if query["kind"] == "factor":
            assert query["factor"] in {f.name for f in FACTORS}


def test_every_factor_has_clinical_search_terms() -> None:
    from clinrisk.explain.service import CLINICAL_TERMS

    assert set(CLINICAL_TERMS) == {f.name for f in FACTORS}
