"""The knowledge corpus in the repository, per task (`knowledge/<task>/`): valid front matter with named
public sources, every risk factor the task's model can report explained by at least one passage that
retrieval finds for it, and retrieval that never crosses from one task's corpus into another's."""

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
from clinrisk.taskspec.catalogue import find_task
from clinrisk.taskspec.spec import TaskSpec

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


HEART = "heart-disease"
HEART_SPEC: TaskSpec = find_task(HEART).spec
REQUIRED_HEART_TOPICS = {
    "chest-pain-guideline",
    "pretest-probability-diamond-forrester",
    "exercise-ecg-st-depression",
    "duke-treadmill-score",
    "thallium-scintigraphy",
    "fluoroscopic-coronary-calcium",
    "risk-factors-cholesterol-blood-pressure",
    "detrano-1989-uci-sites",
}


def task_factors(spec: TaskSpec) -> dict[str, str]:
    """Factor name -> label of a task-file task: each feature column (a categorical's codes are one
    factor), and the file label (`site`) that pooled sites add."""
    factors = {column.name: column.description or column.name for column in spec.feature_columns}
    if spec.source.file_label is not None:
        factors[spec.source.file_label.column] = "Site"
    return factors


HEART_FACTORS = task_factors(HEART_SPEC)


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return load_directory(KNOWLEDGE / TASK)


@pytest.fixture(scope="module")
def heart_documents() -> list[Document]:
    return load_directory(KNOWLEDGE / HEART)


@pytest.fixture(scope="module")
def index(
    documents: list[Document], heart_documents: list[Document], tmp_path_factory: pytest.TempPathFactory
) -> LocalKnowledgeIndex:
    """Both tasks' corpora in one index, as in the cloud's one collection: retrieval filters by task."""
    knowledge = LocalKnowledgeIndex(tmp_path_factory.mktemp("knowledge"), WordLlamaEmbedder())
    sync([*documents, *heart_documents], knowledge)
    return knowledge


@pytest.mark.parametrize(("task", "topics"), [(TASK, REQUIRED_TOPICS), (HEART, REQUIRED_HEART_TOPICS)])
def test_documents_name_a_public_source_and_cover_the_topics(task: str, topics: set[str]) -> None:
    documents = load_directory(KNOWLEDGE / task)
    assert {d.meta.id for d in documents} >= topics
    for document in documents:
        assert document.meta.task == task
        assert document.meta.url.scheme == "https"
        assert document.meta.id == doc_id_of_key(f"{task}/{document.meta.id}.md")
        assert (KNOWLEDGE / task / f"{document.meta.id}.md").is_file()
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
    from clinrisk.taskspec.catalogue import find_task

    assert set(find_task("readmission").spec.factor_terms) == {f.name for f in FACTORS}


# --------------------------------------------------------------------------- heart disease


def test_every_heart_factor_is_named_by_a_document(heart_documents: list[Document]) -> None:
    """The factors are the task file's feature columns (tasks/heart-disease.yaml) and the site."""
    assert "site" in HEART_FACTORS and "oldpeak" in HEART_FACTORS and "num" not in HEART_FACTORS
    named = {factor for d in heart_documents for factor in d.meta.factors}
    assert set(HEART_FACTORS) <= named
    assert named <= set(HEART_FACTORS), "a document names a factor the model does not have"


@pytest.mark.parametrize("factor", sorted(HEART_FACTORS))
def test_every_heart_factor_retrieves_a_passage_that_explains_it(index: LocalKnowledgeIndex, factor: str) -> None:
    """A query made from the task file alone (the column's description and the task's description)
    finds, in its top 5, a passage of a document that lists the factor."""
    label = HEART_FACTORS[factor]
    query = f"{label} ({factor}): x. How does {label} relate to {HEART_SPEC.description}"
    hits = index.search(query, task=HEART, k=5)
    assert any(factor in hit.chunk.factors for hit in hits), [h.chunk.id for h in hits]


def test_retrieval_never_crosses_tasks(index: LocalKnowledgeIndex) -> None:
    """A readmission explanation never cites a heart passage, and a heart one never a readmission
    passage, even for a query that is about the other task."""
    heart_query = "ST depression on the exercise ECG and a reversible thallium defect"
    readmission_query = "HbA1c measured during the stay and insulin changed at discharge"
    for query in (heart_query, readmission_query):
        assert {hit.chunk.task for hit in index.search(query, task=TASK, k=10)} == {TASK}
        assert {hit.chunk.task for hit in index.search(query, task=HEART, k=10)} == {HEART}
    assert index.search(heart_query, task="stroke", k=5) == []
