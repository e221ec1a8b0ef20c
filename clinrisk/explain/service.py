"""The explain domain, for every task: a scored record's top factors get passages retrieved from the
task's corpus, similar past patients are summarised from the task's own index, a writer composes
the narrative in the task's words (`clinrisk.explain.task_words`), it is verified, and the answer
comes within a fixed budget (`explain_subject`). `POST /v1/explain` (readmission, `explain`) scores
an encounter as predict does (the same `ServingModel.score`); any other task's record is scored by
its own model (`clinrisk.explain.task_explain`).

Degrade, don't fail: when the knowledge index, the similar-patient index or the writer fails, is
slow, or the guardrail intervenes, the answer still comes back with the prediction and whatever
was found, `degraded: true` and the reasons; the narrative then comes from the deterministic
writer. Only scoring itself can fail the request (as in predict).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clinrisk.explain.brief import Brief
from clinrisk.explain.corpus import Chunk
from clinrisk.explain.deadline import Deadline
from clinrisk.explain.ports import Draft, GuardrailAction, KnowledgeIndex, NarrativeWriter, SimilarPatientIndex
from clinrisk.explain.similar import SimilarPatients
from clinrisk.explain.task_words import READMISSION_WORDS, TaskWords
from clinrisk.explain.verification import Verified, verify
from clinrisk.explain.writer import DeterministicWriter
from clinrisk.serving.model_holder import Deployment
from clinrisk.serving.prediction import EncounterInput, Prediction
from clinrisk.serving.scoring import Bands, RiskFactor
from clinrisk.settings import ExplainSettings
from clinrisk.tasks.readmission.factors import FACTORS
from clinrisk.tasks.readmission.model_card import INTENDED_USE
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID

logger = logging.getLogger(__name__)
TASK = READMISSION_WORDS.task
# Time kept back for verification and the response once the writer is called.
_RESERVE_SECONDS = 0.25


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encounter: EncounterInput


class Citation(BaseModel):
    id: str = Field(description="The passage id as cited in the narrative.")
    title: str
    section: str = Field(description="The passage's heading path.")
    source: str = Field(description="The named guideline or paper the passage summarises.")
    url: str


class ModelIds(BaseModel):
    risk_model: str
    risk_model_version: int
    writer: str = Field(description="The Bedrock model (or inference profile) or the local writer that wrote it.")
    embedding: str | None = Field(description="The embedding model behind passage retrieval.")


class VerificationReport(BaseModel):
    dropped_sentences: int = Field(description="Sentences removed before the narrative was returned.")
    reasons: dict[str, int] = Field(description="unretrieved_citation, unverified_number, uncited.")


class ExplainResponse(BaseModel):
    request_id: str
    prediction: Prediction
    narrative: str = Field(
        description="Verified: every sentence cites a retrieved passage or states the model's numbers."
    )
    citations: list[Citation]
    similar_patients: SimilarPatients | None
    guardrail_action: GuardrailAction
    models: ModelIds
    degraded: bool
    degraded_reasons: list[str]
    verification: VerificationReport
    intended_use: str = Field(description="The model card's intended-use statement.")


@dataclass(frozen=True)
class Explainer:
    """The ports an explanation uses, built once per process (`clinrisk.runtime.build_explainer`).
    `similar` gives each task's similar-patient index (each task has its own factors, so its own
    vectors)."""

    knowledge: KnowledgeIndex
    similar: Callable[[str], SimilarPatientIndex]
    writer: NarrativeWriter
    embedding_id: str | None
    settings: ExplainSettings


@dataclass(frozen=True)
class Subject:
    """A scored record as an explanation needs it, whatever its task."""

    probability: float
    band: str
    factors: tuple[RiskFactor, ...]  # every factor of the model, largest contribution first
    vector: list[float]  # each factor's contribution, in the task's factor order (the similar-patient vector)
    model_version: int


@dataclass(frozen=True)
class Explanation:
    """What the explanation adds to a prediction: the verified narrative, its sources, the similar
    patients, and why it is degraded, if it is."""

    narrative: str
    citations: list[Citation]
    similar: SimilarPatients | None
    draft: Draft
    reasons: list[str]
    verification: VerificationReport

    def response_fields(self, model_name: str, model_version: int, explainer: Explainer) -> dict[str, Any]:
        """The fields every task's explain response shares, beside its request id, prediction and intended use."""
        models = ModelIds(
            risk_model=model_name,
            risk_model_version=model_version,
            writer=self.draft.model_id,
            embedding=explainer.embedding_id,
        )
        return {
            "narrative": self.narrative,
            "citations": self.citations,
            "similar_patients": self.similar,
            "guardrail_action": self.draft.guardrail_action,
            "models": models,
            "degraded": bool(self.reasons),
            "degraded_reasons": self.reasons,
            "verification": self.verification,
        }


def no_corpus_reason(task: str) -> str:
    return f"task {task!r} has no knowledge corpus: no passage was retrieved for its factors"


def factor_query(factor: RiskFactor, words: TaskWords = READMISSION_WORDS) -> str:
    """The retrieval query for a factor, in the task's words (readmission's by default)."""
    return words.factor_query(factor.factor, factor.label, factor.value)


def explain_subject(subject: Subject, *, words: TaskWords, explainer: Explainer, deadline: Deadline) -> Explanation:
    """Retrieve passages for the first `settings.factors_explained` factors, summarise similar past
    patients, write and verify the narrative: degraded, never failed, when a part is missing."""
    settings = explainer.settings
    top = subject.factors[: settings.factors_explained]
    reasons: list[str] = []
    passages_job = deadline.submit(lambda: _retrieve(explainer.knowledge, words, top, settings))
    similar_job = deadline.submit(
        lambda: explainer.similar(words.task).summarise(
            subject.vector, model_version=subject.model_version, k=settings.neighbours
        )
    )
    passages, by_factor = _degrading(deadline, passages_job, "knowledge retrieval", reasons, default=((), {}))
    if by_factor and not passages:  # retrieval answered, with nothing: the task has no corpus in the index
        reasons.append(no_corpus_reason(words.task))
    similar = _degrading(deadline, similar_job, "similar-patient search", reasons, default=None)

    brief = Brief(words.task, subject.probability, subject.band, top, passages, by_factor, similar, words)
    draft, verified = write_narrative(brief, explainer.writer, deadline, reasons)
    cited = {c: brief.passage(c) for c in verified.cited}
    return Explanation(
        narrative=verified.text,
        citations=[_citation(chunk) for chunk in cited.values()],
        similar=similar,
        draft=draft,
        reasons=reasons,
        verification=VerificationReport(dropped_sentences=verified.dropped_count, reasons=dict(verified.dropped)),
    )


def explain(
    request: ExplainRequest,
    *,
    deployment: Deployment,
    bands: Bands,
    top_factors: int,
    explainer: Explainer,
    request_id: str,
) -> ExplainResponse:
    """Readmission's explanation. `top_factors` factors are reported (as predict reports them); the
    first `settings.factors_explained` of them get retrieval queries."""
    deadline = Deadline(explainer.settings.budget_seconds)
    model = deployment.answering_model(request_id)
    record = request.encounter.to_record()
    prior = int(record.pop("prior_encounters"))
    scored = model.score([record], [prior], bands=bands, top_k=len(FACTORS))[0]
    by_name = {f.factor: f.contribution for f in scored.factors}
    subject = Subject(
        probability=scored.probability,
        band=scored.band,
        factors=tuple(scored.factors),
        vector=[by_name[f.name] for f in FACTORS],
        model_version=model.version,
    )
    explained = explain_subject(subject, words=READMISSION_WORDS, explainer=explainer, deadline=deadline)
    prediction = Prediction(
        **scored.model_dump(exclude={"factors"}),
        factors=scored.factors[:top_factors],
        encounter_id=record[ENCOUNTER_ID],
        model_version=model.version,
    )
    fields = explained.response_fields(model.name, model.version, explainer)
    return ExplainResponse(request_id=request_id, prediction=prediction, **fields, intended_use=INTENDED_USE)


def _retrieve(
    knowledge: KnowledgeIndex, words: TaskWords, factors: tuple[RiskFactor, ...], settings: ExplainSettings
) -> tuple[tuple[Chunk, ...], dict[str, tuple[str, ...]]]:
    passages: dict[str, Chunk] = {}
    by_factor: dict[str, tuple[str, ...]] = {}
    for factor in factors:
        hits = knowledge.search(
            factor_query(factor, words), task=words.task, k=settings.passages_per_factor, factor=factor.factor
        )
        by_factor[factor.factor] = tuple(hit.chunk.id for hit in hits)
        passages.update({hit.chunk.id: hit.chunk for hit in hits})
    return tuple(passages.values()), by_factor


def _degrading(deadline: Deadline, job: Any, what: str, reasons: list[str], *, default: Any) -> Any:
    """The job's result, or `default` with a reason when it failed or ran out of time."""
    try:
        return deadline.wait(job, what=what)
    except Exception as error:  # degrade, don't fail: any adapter error is a reason, not a 5xx
        reasons.append(f"{what} unavailable ({type(error).__name__})")
        logger.warning("explain degraded: %s failed with %s", what, type(error).__name__)
        return default


def write_narrative(
    brief: Brief, writer: NarrativeWriter, deadline: Deadline, reasons: list[str]
) -> tuple[Draft, Verified]:
    """The writer's verified narrative; the deterministic writer's when the writer fails or runs
    out of time, the guardrail intervenes, or no cited sentence of its text survives verification.
    Each such event appends a reason."""
    fallback = DeterministicWriter()
    if writer.model_id == fallback.model_id:
        draft = writer.write(brief, timeout=deadline.remaining())
        return draft, _checked(draft, brief)
    job = deadline.submit(lambda: writer.write(brief, timeout=max(deadline.remaining() - _RESERVE_SECONDS, 0.0)))
    generated: Draft | None = _degrading(deadline, job, "narrative generation", reasons, default=None)
    if generated is not None and generated.guardrail_action == "INTERVENED":
        reasons.append("narrative generation blocked by the guardrail")
    elif generated is not None:
        verified = _checked(generated, brief)
        if verified.cited:
            return generated, verified
        reasons.append("generated narrative failed verification")
    guardrail: GuardrailAction = generated.guardrail_action if generated is not None else "NOT_APPLIED"
    written = fallback.write(brief, timeout=deadline.remaining())
    return Draft(written.text, written.model_id, guardrail), _checked(written, brief)


def _checked(draft: Draft, brief: Brief) -> Verified:
    return verify(
        draft.text, retrieved=brief.passage_ids, quantities=brief.quantities, factor_values=brief.factor_values
    )


def _citation(chunk: Chunk) -> Citation:
    return Citation(
        id=chunk.id, title=chunk.title, section=" > ".join(chunk.heading_path), source=chunk.source, url=chunk.url
    )
