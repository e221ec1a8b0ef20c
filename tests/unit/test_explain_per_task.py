"""Explanations for every task (issue 14 part 6): the explain service runs on any task's factors in
the task's words, with the task's corpus and its own similar-patient index; readmission's words and
prompt stay what they were; a task without a corpus is answered degraded, saying so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clinrisk.adapters.local_embeddings import WordLlamaEmbedder
from clinrisk.adapters.local_knowledge import LocalKnowledgeIndex
from clinrisk.adapters.local_similar import LocalSimilarPatientIndex
from clinrisk.data.task_binding import resolve_task
from clinrisk.explain.brief import Brief
from clinrisk.explain.corpus import load_directory
from clinrisk.explain.deadline import Deadline
from clinrisk.explain.ingest import sync
from clinrisk.explain.prompt import numbers_text, question, system_prompt
from clinrisk.explain.service import Explainer, Subject, explain_subject, no_corpus_reason
from clinrisk.explain.similar import summarise
from clinrisk.explain.similar_index import SimilarRows, factor_order
from clinrisk.explain.task_words import READMISSION_WORDS, task_words
from clinrisk.explain.verification import Quantity, verify
from clinrisk.explain.writer import DeterministicWriter
from clinrisk.serving.scoring import RiskFactor
from clinrisk.settings import ExplainSettings
from clinrisk.taskspec.catalogue import find_task
from clinrisk.taskspec.spec import Subgroup
from clinrisk.taskspec.summary_fields import summary_fields
from tests.heart_synthetic import heart_frame

KNOWLEDGE = Path(__file__).resolve().parents[2] / "knowledge"
HEART = find_task("heart-disease").spec
# The system prompt before there were task words (clinrisk/explain/prompt.py at af573e0).
READMISSION_SYSTEM_PROMPT = (
    "You explain a hospital readmission risk estimate to a clinician, in 3 to 6 plain sentences.\n"
    + """Rules:
- Every sentence that states clinical knowledge must end with the id of the passage it comes from,
  in square brackets, exactly as given, e.g. [lace-index#1-0123456789abcdef].
- Use only the passages given. Never invent ids.
- State no probability or percentage other than those given under "Numbers". Copy them exactly as written,
  each as what it is: the model's estimate, or the similar past encounters' rate and its interval.
- Do not recommend, start, stop or dose any medication or treatment. Do not give a diagnosis.
- If the passages do not support a statement, leave the statement out."""
)


def _factor(name: str, label: str, value: str, contribution: float) -> RiskFactor:
    direction = "increases" if contribution > 0 else "decreases"
    return RiskFactor(factor=name, label=label, value=value, contribution=contribution, direction=direction)


HEART_FACTORS = (
    _factor("oldpeak", "ST depression induced by exercise relative to rest", "0.8 mm", 0.9),
    _factor("cp", "Chest pain type", "4 (asymptomatic)", 0.7),
    _factor("thal", "Thallium stress test", "7 (reversible defect)", 0.5),
    _factor("age", "Age", "63 years", 0.2),
)


# --------------------------------------------------------------------------- words, prompt, verifier


def test_a_task_file_task_speaks_of_its_own_outcome_and_queries_with_its_own_labels() -> None:
    words = task_words(HEART)
    assert (words.task, words.outcome) == ("heart-disease", "heart disease (num > 0)")
    label = "Chest pain type"
    assert words.factor_query("cp", label, "4 (asymptomatic)") == (
        f"{label} (cp): 4 (asymptomatic). How does {label} relate to {HEART.description}"
    )
    assert task_words(find_task("readmission").spec) is READMISSION_WORDS
    # A task file's factor_terms put the corpus's words in place of the column's name.
    worded = task_words(HEART.model_copy(update={"factor_terms": {"cp": "angina chest pain"}}))
    assert worded.factor_query("cp", label, "4 (asymptomatic)").startswith(f"{label} (angina chest pain): 4")


def test_readmission_queries_carry_the_clinical_terms_of_its_task_file() -> None:
    query = READMISSION_WORDS.factor_query("time_in_hospital", "Time in hospital", "9 days")
    assert query == (
        "Time in hospital (length of stay): 9 days. How does Time in hospital relate to hospital readmission?"
    )


def test_readmission_prompt_and_words_are_unchanged() -> None:
    brief = Brief("readmission", 0.2341, "high", (), (), {}, summarise([1] * 5 + [0] * 15, {}, model_version=1))
    assert system_prompt(brief) == READMISSION_SYSTEM_PROMPT
    assert question(brief).startswith("Why is this patient's 30-day readmission risk estimated as it is")
    assert numbers_text(brief).splitlines()[1:] == [
        "- Model's probability of readmission within 30 days: 23.4% (high band).",
        "- Of the 20 most similar past encounters, 25.0% were readmitted (95% CI 11.2% to 46.9%).",
    ]


def test_a_heart_prompt_names_heart_disease_and_never_readmission() -> None:
    brief = Brief("heart-disease", 0.61, "high", HEART_FACTORS, (), {}, None, task_words(HEART))
    text = system_prompt(brief) + question(brief) + numbers_text(brief)
    assert "readmi" not in text.lower()
    assert "a heart disease risk estimate" in system_prompt(brief)
    assert "probability of heart disease (num > 0): 61.0%" in numbers_text(brief)


def test_a_factor_value_is_a_measurement_not_a_probability() -> None:
    """`0.8 mm` of ST depression is not an 80% risk: kept where the sentence names the factor; the
    same digits stated as nobody's probability, or as a percentage, are still checked."""
    quantities: dict[Quantity, tuple[float, ...]] = {"probability": (0.61,)}
    values = {"ST depression induced by exercise relative to rest": "0.8 mm", "oldpeak": "0.8 mm"}
    measured = "ST depression induced by exercise relative to rest (0.8 mm) raises this estimate [doc#0-a]."
    kept = verify(measured, retrieved={"doc#0-a"}, quantities=quantities, factor_values=values)
    assert kept.text == measured and kept.dropped_count == 0
    unnamed = "The chance is 0.8 mm higher [doc#0-a]."
    as_percent = "Oldpeak gives the model an estimate of 0.8 % [doc#0-a]."
    for sentence in (unnamed, as_percent):
        checked = verify(sentence, retrieved={"doc#0-a"}, quantities=quantities, factor_values=values)
        assert checked.dropped == {"unverified_number": 1}, sentence
    # Readmission's values are counts and codes: nothing changes for them.
    assert verify("The model estimates 61.0%.", retrieved=set(), quantities=quantities, factor_values={}).text


# --------------------------------------------------------------------------- similar-patient fields


def test_similar_patient_fields_of_a_task_file_are_its_coded_subgroups() -> None:
    assert summary_fields(HEART) == ("sex", "age_band", "site")
    raw = HEART.model_copy(update={"subgroups": [*HEART.subgroups, Subgroup(name="raw_age", column="age")]})
    by_id = HEART.model_copy(update={"subgroups": [Subgroup(name="row", column="row_id")]})
    assert summary_fields(raw) == ("sex", "age_band", "site") and summary_fields(by_id) == ()


def test_factor_vectors_follow_the_order_serving_reports_factors_in() -> None:
    """Documents written at training and vectors made at request time must agree, dimension by dimension."""
    from clinrisk.tasks.readmission.factors import FACTORS

    assert factor_order(resolve_task("heart-disease")) == [c.name for c in HEART.feature_columns]
    assert factor_order(resolve_task("readmission")) == [f.name for f in FACTORS]


# --------------------------------------------------------------------------- the service, end to end


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> LocalKnowledgeIndex:
    index = LocalKnowledgeIndex(tmp_path_factory.mktemp("knowledge"), WordLlamaEmbedder())
    sync([*load_directory(KNOWLEDGE / "heart-disease"), *load_directory(KNOWLEDGE / "readmission")], index)
    return index


@pytest.fixture
def heart_similar(tmp_path: Path) -> Iterator[LocalSimilarPatientIndex]:
    rng = np.random.default_rng(1)
    n, dims = 200, len(HEART.feature_columns)
    index = LocalSimilarPatientIndex(tmp_path / "heart")
    fields = {name: rng.choice(["a", "b"], n) for name in summary_fields(HEART)}
    index.write(1, SimilarRows(rng.normal(0, 1, (n, dims)).astype(np.float32), rng.integers(0, 2, n, np.int8), fields))
    yield index


def _explainer(knowledge: LocalKnowledgeIndex, similar: dict[str, LocalSimilarPatientIndex]) -> Explainer:
    def by_task(task: str) -> LocalSimilarPatientIndex:
        return similar[task]  # KeyError: no index for the task, a degraded reason

    return Explainer(knowledge, by_task, DeterministicWriter(), "wordllama", ExplainSettings())


def _subject() -> Subject:
    vector = [0.0] * len(HEART.feature_columns)
    return Subject(probability=0.61, band="high", factors=HEART_FACTORS, vector=vector, model_version=1)


def test_a_heart_record_is_explained_from_the_heart_corpus_and_its_own_index(
    knowledge: LocalKnowledgeIndex, heart_similar: LocalSimilarPatientIndex
) -> None:
    explainer = _explainer(knowledge, {"heart-disease": heart_similar})
    explained = explain_subject(_subject(), words=task_words(HEART), explainer=explainer, deadline=Deadline(30))
    assert explained.reasons == []
    heart_docs = {path.stem for path in (KNOWLEDGE / "heart-disease").glob("*.md")}
    assert explained.citations and {c.id.split("#")[0] for c in explained.citations} <= heart_docs
    assert explained.similar is not None and explained.similar.k == ExplainSettings().neighbours
    assert set(explained.similar.distributions) == {"sex", "age_band", "site"}
    assert explained.narrative.startswith("The model estimates a 61.0% probability of heart disease (num > 0)")
    # The ST depression sentence (a value of 0.8 mm) survives verification with its citation.
    assert "(0.8 mm) raises this estimate" in explained.narrative
    assert "readmi" not in explained.narrative.lower()


def test_a_task_without_a_corpus_is_degraded_with_the_reason(
    knowledge: LocalKnowledgeIndex, heart_similar: LocalSimilarPatientIndex
) -> None:
    stroke = HEART.model_copy(update={"name": "stroke"})
    explainer = _explainer(knowledge, {"stroke": heart_similar})
    explained = explain_subject(_subject(), words=task_words(stroke), explainer=explainer, deadline=Deadline(30))
    assert explained.reasons == [no_corpus_reason("stroke")]
    assert "no knowledge corpus" in explained.reasons[0]
    assert explained.citations == [] and explained.similar is not None


def test_similar_patient_fields_never_hold_an_identifier() -> None:
    task = resolve_task("heart-disease")
    frame = heart_frame(60).astype(str)
    frame.insert(0, "row_id", [f"cleveland-{i}" for i in range(60)])
    frame.insert(1, "site", "cleveland")
    fields = task.similar_fields(task.examples(frame))
    assert set(fields) == {"sex", "age_band", "site"}
    assert not any(value.startswith("cleveland-") for values in fields.values() for value in values)
    assert set(fields["age_band"]) <= {"<45", "45-55", "55-65", "≥65"}


def test_in_the_cloud_each_task_reads_and_loads_its_own_similar_patient_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the explain and promote functions open on the aws backend (no request is made here)."""
    from clinrisk.adapters.opensearch import OpenSearchSimilarPatientIndex
    from clinrisk.runtime import build_similar_index
    from clinrisk.settings import Settings
    from clinrisk.tasks.readmission.explanation import SUMMARY_FIELDS

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLINRISK_EXPLAIN__OPENSEARCH_ENDPOINT", "https://abc123.us-east-1.aoss.amazonaws.com")
    settings = Settings(backend="aws", aws_region="us-east-1")
    heart, readmission = build_similar_index(settings, "heart-disease"), build_similar_index(settings)
    assert isinstance(heart, OpenSearchSimilarPatientIndex) and isinstance(readmission, OpenSearchSimilarPatientIndex)
    assert (heart.index, heart.fields) == ("clinrisk-similar-patients-heart-disease", ("sex", "age_band", "site"))
    assert (readmission.index, readmission.fields) == ("clinrisk-similar-patients", SUMMARY_FIELDS)
