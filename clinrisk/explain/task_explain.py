"""`POST /v1/tasks/{task}/explain` for a task other than readmission: the record is scored by the
task's champion (as predict scores it), and explained by the same service as readmission
(`clinrisk.explain.service.explain_subject`) in the task's words: passages from the task's corpus
(`knowledge/<task>/`), similar past patients from the task's own index, the narrative verified.

A task without a corpus (one `clinrisk task init` drafted, say) is answered `degraded` with the
reason; a task whose champion has no similar-patient documents likewise. Only scoring can fail.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from clinrisk.explain.deadline import Deadline
from clinrisk.explain.ports import GuardrailAction
from clinrisk.explain.service import (
    Citation,
    Explainer,
    ModelIds,
    Subject,
    VerificationReport,
    explain_subject,
)
from clinrisk.explain.similar import SimilarPatients
from clinrisk.explain.task_words import task_words
from clinrisk.serving.task_contract import TaskExplainRequest
from clinrisk.serving.tasks import TaskPrediction, TaskServing


class TaskExplainResponse(BaseModel):
    request_id: str
    task: str
    prediction: TaskPrediction
    narrative: str = Field(
        description="Verified: every sentence cites a retrieved passage or states the model's numbers."
    )
    citations: list[Citation] = Field(description="The passages of the task's corpus the narrative cites.")
    similar_patients: SimilarPatients | None = Field(
        description="What the most similar past patients of the champion's training data went on to do "
        "(`readmitted` counts those with the task's outcome); null when the index cannot answer."
    )
    guardrail_action: GuardrailAction
    models: ModelIds
    degraded: bool
    degraded_reasons: list[str]
    verification: VerificationReport
    intended_use: str = Field(description="The task file's intended-use statement.")


def explain_task(
    serving: TaskServing, name: str, request: TaskExplainRequest, *, explainer: Explainer, request_id: str
) -> TaskExplainResponse:
    """Score the record with the task's champion (or its canary) and explain it."""
    deadline = Deadline(explainer.settings.budget_seconds)
    task = serving.task(name)
    model = task.follower.current().answering_model(request_id)
    record = request.record.model_dump()
    scored = model.score([record], bands=task.bands, top_k=len(task.spec.feature_columns))[0]
    by_name = {f.factor: f.contribution for f in scored.factors}
    subject = Subject(
        probability=scored.probability,
        band=scored.band,
        factors=tuple(scored.factors),
        vector=[by_name.get(column.name, 0.0) for column in task.spec.feature_columns],
        model_version=model.version,
    )
    explained = explain_subject(subject, words=task_words(task.spec), explainer=explainer, deadline=deadline)
    prediction = TaskPrediction(
        **scored.model_dump(exclude={"factors"}),
        factors=scored.factors[: serving.settings.serving.top_factors],
        record_id=record[task.spec.record_id],
        model_version=model.version,
    )
    fields = explained.response_fields(model.name, model.version, explainer)
    return TaskExplainResponse(
        request_id=request_id,
        task=name,
        prediction=prediction,
        **fields,
        intended_use=task.spec.model_card.intended_use,
    )
