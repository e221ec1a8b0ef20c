"""`POST /v1/tasks/{task}/explain` for a task other than readmission: the prediction and its
factors, with a narrative made of the model's own numbers, answered `degraded` with the reason.

The explanation service (`clinrisk.explain.service`) retrieves passages from readmission's corpus
and searches readmission's similar-patient index; no other task has a corpus or an index wired to
it yet, so this answers with what the model alone can say rather than failing.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from clinrisk.serving.task_contract import TaskExplainRequest
from clinrisk.serving.tasks import TaskPrediction, TaskServing


class TaskExplainResponse(BaseModel):
    request_id: str
    task: str
    prediction: TaskPrediction
    narrative: str = Field(description="The model's numbers in words: its probability, band and largest factors.")
    citations: list[str] = Field(description="Passages cited; none without a corpus.")
    similar_patients: None = Field(description="Similar past patients; none without an index.")
    degraded: bool
    degraded_reasons: list[str]
    intended_use: str = Field(description="The task file's intended-use statement.")


def no_corpus_reason(task: str) -> str:
    return f"task {task!r} has no knowledge corpus or similar-patient index wired to explanations"


def explain_task(
    serving: TaskServing, name: str, request: TaskExplainRequest, *, request_id: str
) -> TaskExplainResponse:
    """Score the record as predict does and say what the model says, degraded for want of a corpus."""
    outcome = serving.predict(name, [request.record], request_id=request_id, capture=False)
    prediction = outcome.response.predictions[0]
    factors = "; ".join(f"{f.label} ({f.value}) {f.direction} the risk" for f in prediction.factors)
    narrative = f"The model estimates a probability of {prediction.probability:.1%} ({prediction.band} band)."
    if factors:
        narrative += f" Its largest factors: {factors}."
    return TaskExplainResponse(
        request_id=request_id,
        task=name,
        prediction=prediction,
        narrative=narrative,
        citations=[],
        similar_patients=None,
        degraded=True,
        degraded_reasons=[no_corpus_reason(name)],
        intended_use=serving.specs[name].model_card.intended_use,
    )
