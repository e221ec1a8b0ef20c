"""The prompt for a generated narrative: the passages (the guardrail's grounding source), the
question (its query), and the model's own numbers, with rules that the verifier then enforces."""

from __future__ import annotations

from clinrisk.explain.brief import Brief

_SYSTEM_PROMPT = """You explain a {risk} risk estimate to a clinician, in 3 to 6 plain sentences.
Rules:
- Every sentence that states clinical knowledge must end with the id of the passage it comes from,
  in square brackets, exactly as given, e.g. [lace-index#1-0123456789abcdef].
- Use only the passages given. Never invent ids.
- State no probability or percentage other than those given under "Numbers". Copy them exactly as written,
  each as what it is: the model's estimate, or the similar past encounters' rate and its interval.
- Do not recommend, start, stop or dose any medication or treatment. Do not give a diagnosis.
- If the passages do not support a statement, leave the statement out."""


def system_prompt(brief: Brief) -> str:
    return _SYSTEM_PROMPT.format(risk=brief.words.risk)


def passages_text(brief: Brief) -> str:
    return "\n\n".join(f"[{p.id}] {p.title} — {' > '.join(p.heading_path)}\n{p.text}" for p in brief.passages)


def question(brief: Brief) -> str:
    factors = ", ".join(f"{f.label} ({f.value}, {f.direction} risk)" for f in brief.factors)
    return f"Why is this patient's {brief.words.question_risk} risk estimated as it is, given these factors: {factors}?"


def numbers_text(brief: Brief) -> str:
    lines = [f"- Model's probability of {brief.words.outcome}: {brief.probability:.1%} ({brief.band} band)."]
    if (similar := brief.similar) is not None:
        lines.append(
            f"- Of the {similar.k} most similar past encounters, {similar.outcome_rate:.1%}"
            f" {brief.words.happened_short} (95% CI {similar.rate_ci_low:.1%} to {similar.rate_ci_high:.1%})."
        )
    return "Numbers:\n" + "\n".join(lines)
