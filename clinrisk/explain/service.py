"""The explain domain: `POST /v1/explain` scores an encounter as predict does (the same
`ServingModel.score`), retrieves passages for its top factors, summarises similar past patients,
has a writer compose the narrative, verifies it, and answers within a fixed budget.

Degrade, don't fail: when the knowledge index, the similar-patient index or the writer fails, is
slow, or the guardrail intervenes, the answer still comes back with the prediction and whatever
was found, `degraded: true` and the reasons; the narrative then comes from the deterministic
writer. Only scoring itself can fail the request (as in predict).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clinrisk.explain.brief import Brief
from clinrisk.explain.corpus import Chunk
from clinrisk.explain.deadline import Deadline
from clinrisk.explain.ports import Draft, GuardrailAction, KnowledgeIndex, NarrativeWriter, SimilarPatientIndex
from clinrisk.explain.similar import SimilarPatients
from clinrisk.explain.verification import Verified, verify
from clinrisk.explain.writer import DeterministicWriter
from clinrisk.serving.model_holder import Deployment
from clinrisk.serving.prediction import EncounterInput, Prediction
from clinrisk.serving.scoring import Bands, RiskFactor
from clinrisk.settings import ExplainSettings
from clinrisk.tasks.readmission.factors import FACTORS
from clinrisk.tasks.readmission.model_card import INTENDED_USE

logger = logging.getLogger(__name__)
TASK = "readmission"
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
    """The ports an explanation uses, built once per process (`clinrisk.runtime.build_explainer`)."""

    knowledge: KnowledgeIndex
    similar: SimilarPatientIndex
    writer: NarrativeWriter
    embedding_id: str | None
    settings: ExplainSettings


# Factor labels name data columns ("time in hospital"); the literature says "length of stay".
# Each factor's clinical words go into its query, so retrieval meets the passages' vocabulary.
CLINICAL_TERMS: dict[str, str] = {
    "time_in_hospital": "length of stay",
    "num_lab_procedures": "laboratory tests",
    "num_procedures": "procedures during the stay",
    "num_medications": "number of medications",
    "number_outpatient": "outpatient clinic visits",
    "number_emergency": "emergency department visits",
    "number_inpatient": "earlier inpatient admissions",
    "number_diagnoses": "number of diagnoses comorbidity",
    "prior_year_visits": "total visits in the prior year",
    "prior_encounters": "earlier encounters repeated hospitalisation",
    "age": "age older patients",
    "gender": "sex men women",
    "race": "race",
    "weight": "body weight recorded",
    "admission_type_id": "admission type emergency elective",
    "admission_source_id": "admission source referral transfer",
    "discharge_disposition_id": "discharge disposition where the patient goes",
    "payer_code": "insurance payer",
    "medical_specialty": "admitting specialty",
    "diag_1": "primary diagnosis",
    "diag_2_3": "secondary diagnoses",
    "diabetic_medications": "diabetic medications dose changes",
    "insulin": "insulin",
    "metformin": "metformin oral agents",
    "change": "change of diabetic treatment",
    "diabetesMed": "diabetic medication prescribed",
    "A1Cresult": "HbA1c measurement",
    "max_glu_serum": "serum glucose",
}


def factor_query(factor: RiskFactor) -> str:
    """The retrieval query for a factor: what it is in clinical words, its value, and the outcome."""
    terms = CLINICAL_TERMS.get(factor.factor, "")
    return f"{factor.label} ({terms}): {factor.value}. How does {factor.label} relate to hospital readmission?"


def explain(
    request: ExplainRequest,
    *,
    deployment: Deployment,
    bands: Bands,
    top_factors: int,
    explainer: Explainer,
    request_id: str,
) -> ExplainResponse:
    """`top_factors` factors are reported (as predict reports them); the first
    `settings.factors_explained` of them get retrieval queries."""
    settings = explainer.settings
    deadline = Deadline(settings.budget_seconds)
    model = deployment.answering_model(request_id)
    record = request.encounter.to_record()
    prior = int(record.pop("prior_encounters"))
    scored = model.score([record], [prior], bands=bands, top_k=len(FACTORS))[0]
    by_name = {f.factor: f.contribution for f in scored.factors}
    vector = [by_name[f.name] for f in FACTORS]
    top = tuple(scored.factors[: settings.factors_explained])

    reasons: list[str] = []
    passages_job = deadline.submit(lambda: _retrieve(explainer.knowledge, top, settings))
    similar_job = deadline.submit(
        lambda: explainer.similar.summarise(vector, model_version=model.version, k=settings.neighbours)
    )
    passages, by_factor = _degrading(deadline, passages_job, "knowledge retrieval", reasons, default=((), {}))
    similar = _degrading(deadline, similar_job, "similar-patient search", reasons, default=None)

    brief = Brief(TASK, scored.probability, scored.band, top, passages, by_factor, similar)
    draft, verified = write_narrative(brief, explainer.writer, deadline, reasons)
    cited = {c: brief.passage(c) for c in verified.cited}
    prediction = Prediction(
        **scored.model_dump(exclude={"factors"}),
        factors=scored.factors[:top_factors],
        encounter_id=record["encounter_id"],
        model_version=model.version,
    )
    return ExplainResponse(
        request_id=request_id,
        prediction=prediction,
        narrative=verified.text,
        citations=[_citation(chunk) for chunk in cited.values()],
        similar_patients=similar,
        guardrail_action=draft.guardrail_action,
        models=ModelIds(
            risk_model=model.name,
            risk_model_version=model.version,
            writer=draft.model_id,
            embedding=explainer.embedding_id,
        ),
        degraded=bool(reasons),
        degraded_reasons=reasons,
        verification=VerificationReport(dropped_sentences=verified.dropped_count, reasons=dict(verified.dropped)),
        intended_use=INTENDED_USE,
    )


def _retrieve(
    knowledge: KnowledgeIndex, factors: tuple[RiskFactor, ...], settings: ExplainSettings
) -> tuple[tuple[Chunk, ...], dict[str, tuple[str, ...]]]:
    passages: dict[str, Chunk] = {}
    by_factor: dict[str, tuple[str, ...]] = {}
    for factor in factors:
        hits = knowledge.search(factor_query(factor), task=TASK, k=settings.passages_per_factor, factor=factor.factor)
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
    return verify(draft.text, retrieved=brief.passage_ids, quantities=brief.quantities)


def _citation(chunk: Chunk) -> Citation:
    return Citation(
        id=chunk.id, title=chunk.title, section=" > ".join(chunk.heading_path), source=chunk.source, url=chunk.url
    )
