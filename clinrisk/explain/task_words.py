"""How an explanation speaks of a task: its outcome in the prompt and the narrative, and each factor's
retrieval query.

Readmission keeps its own outcome words (`clinrisk.tasks.readmission.explanation`). Any other task's
come from its task file alone: the outcome is the task's name and its target rule (`heart disease
(num > 0)`), and a factor's query joins the column's label, its clinical terms (the task file's
`factor_terms`, else its name), the value as reported (with its unit or code label) and the task's
description, so that retrieval meets the corpus's words (tests/unit/test_knowledge_corpus.py
retrieves every heart factor with this query). Readmission's terms are in its task file too, read
on the first query. Light on purpose: the explain function has no pandas.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from clinrisk.settings import DEFAULT_TASK
from clinrisk.tasks.readmission import explanation as readmission
from clinrisk.taskspec.catalogue import find_task
from clinrisk.taskspec.spec import TaskSpec


@dataclass(frozen=True)
class TaskWords:
    task: str
    risk: str  # "You explain a <risk> risk estimate"
    question_risk: str  # "Why is this patient's <question_risk> risk estimated as it is"
    outcome: str  # "a 23.4% probability of <outcome>"
    happened: str  # "of the 50 most similar past encounters in the model's training data, 12.0% <happened>"
    happened_short: str  # the prompt's numbers: "of the 50 most similar past encounters, 12.0% <happened_short>"
    query: Callable[[str, str, str], str]  # (factor, label, value as reported) -> retrieval query

    def factor_query(self, factor: str, label: str, value: str) -> str:
        return self.query(factor, label, value)


@functools.cache
def _readmission_terms() -> dict[str, str]:
    # Read when the first query is made, not at import, so that importing the explain service reads no file.
    return find_task(DEFAULT_TASK).spec.factor_terms


def _readmission_query(factor: str, label: str, value: str) -> str:
    terms = _readmission_terms().get(factor, "")
    return f"{label} ({terms}): {value}. How does {label} relate to {readmission.RISK}?"


READMISSION_WORDS = TaskWords(
    task=DEFAULT_TASK,
    risk=readmission.RISK,
    question_risk=readmission.QUESTION_RISK,
    outcome=readmission.OUTCOME,
    happened=readmission.HAPPENED,
    happened_short=readmission.HAPPENED_SHORT,
    query=_readmission_query,
)


def task_words(spec: TaskSpec) -> TaskWords:
    """The words of the task `spec` declares; readmission's own for readmission."""
    if spec.name == DEFAULT_TASK:
        return READMISSION_WORDS
    target = spec.target
    rule = target.positive_if if target.positive_if is not None else "= " + " or ".join(target.positive or ())
    outcome = f"{spec.name.replace('-', ' ')} ({target.column} {rule})"

    def query(factor: str, label: str, value: str) -> str:
        terms = spec.factor_terms.get(factor, factor)
        return f"{label} ({terms}): {value}. How does {label} relate to {spec.description}"

    return TaskWords(
        task=spec.name,
        risk=spec.name.replace("-", " "),
        question_risk=spec.name.replace("-", " "),
        outcome=outcome,
        happened=f"had {outcome}",
        happened_short=f"had {outcome}",
        query=query,
    )
