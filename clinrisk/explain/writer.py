"""The deterministic narrative writer: the local stand-in for Bedrock, and the fallback when
Bedrock cannot answer. It states the model's number, then for each top factor that has a passage
one sentence quoting that passage with its citation, then the similar patients' outcome. Its
output goes through the same verification as a generated narrative."""

from __future__ import annotations

import re

from clinrisk.explain.brief import Brief
from clinrisk.explain.ports import Draft

WRITER_ID = "clinrisk-deterministic-writer-1"
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")


class DeterministicWriter:
    model_id = WRITER_ID

    def write(self, brief: Brief, *, timeout: float) -> Draft:
        return Draft(text=compose(brief), model_id=WRITER_ID, guardrail_action="NOT_APPLIED")


def compose(brief: Brief) -> str:
    sentences = [
        f"The model estimates a {brief.probability:.1%} probability of {brief.words.outcome} ({brief.band} risk band)."
    ]
    used: set[str] = set()
    for factor in brief.factors:
        chunk_id = next((i for i in brief.passages_by_factor.get(factor.factor, ()) if i not in used), None)
        if chunk_id is None:
            continue
        used.add(chunk_id)
        passage = brief.passage(chunk_id)
        verb = "raises" if factor.direction == "increases" else "lowers"
        sentences.append(
            f"{_capitalised(factor.label)} ({factor.value}) {verb} this estimate;"
            f" “{_first_sentence(passage.text)}” ({passage.title}) [{chunk_id}]."
        )
    if (similar := brief.similar) is not None:
        sentences.append(
            f"Of the {similar.k} most similar past encounters in the model's training data,"
            f" {similar.outcome_rate:.1%} {brief.words.happened}"
            f" (95% CI {similar.rate_ci_low:.1%} to {similar.rate_ci_high:.1%})."
        )
    return " ".join(sentences)


def _first_sentence(text: str) -> str:
    match = _FIRST_SENTENCE.match(text)
    return (match.group(1) if match else text).rstrip(".")


def _capitalised(label: str) -> str:
    return label[:1].upper() + label[1:]
