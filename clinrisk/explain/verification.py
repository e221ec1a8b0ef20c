"""Verification of a narrative before it is returned, whoever wrote it (Bedrock or the local writer).

A narrative is checked sentence by sentence:
- every citation `[passage id]` must name a passage that was retrieved for this request;
- every probability or percentage must equal (as rounded in the text) the number of the quantity
  the sentence says it is: the model's estimate, the similar patients' rate, or a bound of their
  interval. Which quantity a number is said to be is read from the cue words around it ("the model
  estimates", "similar past encounters", "CI"): the bounds listed right after an interval's cue are
  its bounds, any other number is the quantity of the nearest cue before or after it; a number with
  no cue in its sentence may be any of them. So the model's probability stated as the similar
  patients' rate is caught, not only a number that is nobody's. "95%" of a confidence interval is a
  level, not a probability;
- a sentence that cites nothing must state one of those numbers: anything else is a clinical
  claim without a source.
A factor's value as the brief reports it (`ST depression (0.8 mm)`) is a measurement, not a
probability: in a sentence that names the factor (by its label or its name) it is left out of the
numbers checked, so a fraction such as 0.8 mm is not read as an 80% risk. Elsewhere, or stated as
a percentage, the same digits are checked as any number is.
A sentence failing a check is dropped, and the reason is counted. What survives is what can be
traced to a retrieved source or to the model's own numbers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

DropReason = Literal["unretrieved_citation", "unverified_number", "uncited"]
Quantity = Literal["probability", "similar_rate", "interval"]

_BRACKET = re.compile(r"\[([^\[\]]{1,400})\]")
_CITATION_ID = re.compile(r"^[A-Za-z0-9][\w.-]*#[\w-]+$")
_PERCENT = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s?(?:%|percent\b)(?!\s*(?:CI\b|confidence|credible))", re.I)
_FRACTION = re.compile(r"(?<![\w.])(0\.\d+|1\.0+)(?![\w.%])")
_TRAILING_CITATIONS = re.compile(r"([.!?])\s*((?:\[[^\[\]]{1,400}\]\s*)+)(?=\s|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[(\"“])")
# Words that say which quantity the numbers after them are. "Risk" and "readmitted" are not cues:
# both the model's estimate and the similar patients' rate are spoken of that way.
_INTERVAL = re.compile(r"\b(?:CI|confidence interval|credible interval|interval)\b", re.I)
_CUES: dict[Quantity, re.Pattern[str]] = {
    "similar_rate": re.compile(r"\b(?:similar|comparable|past|earlier|previous|neighbou?rs?|training)\b", re.I),
    "probability": re.compile(r"\b(?:model|estimat\w*|predict\w*|probability|chance)\b", re.I),
}
# Between an interval's cue and each of its bounds: only other numbers and joining words ("CI 6.7% to 21.0%").
_BOUNDS_GAP = re.compile(r"^(?:[\s\d.,%:=()\u2013\u2014-]|\b(?:to|and|from|between|of|is|was|percent)\b)*$", re.I)


@dataclass(frozen=True)
class Verified:
    text: str
    cited: tuple[str, ...]
    dropped: dict[DropReason, int] = field(default_factory=dict)

    @property
    def dropped_count(self) -> int:
        return sum(self.dropped.values())


def sentences(text: str) -> list[str]:
    """Split into sentences; citations standing after a full stop move before it, into the
    sentence they belong to ("A. [id] B." → "A [id]." and "B.")."""
    normal = _TRAILING_CITATIONS.sub(lambda m: f" {m.group(2).strip()}{m.group(1)} ", " ".join(text.split()))
    return [p.strip() for p in _SENTENCE_END.split(normal.strip()) if p.strip()]


def citations(sentence: str) -> list[str]:
    """The passage ids a sentence cites: bracketed ids, possibly several separated by commas."""
    found: list[str] = []
    for content in _BRACKET.findall(sentence):
        ids = [part.strip() for part in re.split(r"[,;]", content)]
        if ids and all(_CITATION_ID.match(i) for i in ids):
            found.extend(ids)
    return found


def stated_numbers(sentence: str) -> list[tuple[float, float]]:
    """(value as a probability, half of its last shown digit) for each percentage or fraction, in
    order; bracketed citations are left out (their ids hold digits)."""
    return [(value, tolerance) for _, value, tolerance in _stated(_BRACKET.sub(" ", sentence))]


def _stated(text: str) -> list[tuple[int, float, float]]:
    """(position, value, tolerance) of each number stated as a probability."""
    numbers = [(m.start(1), float(m[1]), 0.5 * 10.0 ** -_decimals(m[1])) for m in _FRACTION.finditer(text)]
    numbers += [(m.start(1), float(m[1]) / 100, 0.5 * 10.0 ** -_decimals(m[1]) / 100) for m in _PERCENT.finditer(text)]
    return sorted(numbers)


def said_to_be(text: str, position: int) -> Quantity | None:
    """The quantity the number at `position` is said to be: a bound when it is listed right after
    an interval's cue, else that of the nearest cue before or after it (a tie goes to the one
    before); None when the sentence has no cue."""
    if any(_BOUNDS_GAP.match(text[m.end() : position]) for m in _INTERVAL.finditer(text[:position])):
        return "interval"
    end = position + len(re.match(r"[\d.]*", text[position:])[0])  # type: ignore[index]
    distances = [
        (position - m.end() if m.end() <= position else m.start() - end, m.end() > position, quantity)
        for quantity, cue in _CUES.items()
        for m in cue.finditer(text)
    ]
    return min(distances)[2] if distances else None


def verify(
    text: str,
    *,
    retrieved: Collection[str],
    quantities: Mapping[Quantity, Sequence[float]],
    factor_values: Mapping[str, str] | None = None,
) -> Verified:
    """`factor_values`: each factor's label and name -> its value as reported (`0.8 mm`)."""
    kept: list[str] = []
    cited: dict[str, None] = {}
    dropped: dict[DropReason, int] = {}
    for sentence in sentences(text):
        reason = _problem(sentence, retrieved, quantities, factor_values or {})
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        kept.append(sentence)
        cited.update(dict.fromkeys(citations(sentence)))
    return Verified(text=" ".join(kept), cited=tuple(cited), dropped=dropped)


def _problem(
    sentence: str,
    retrieved: Collection[str],
    quantities: Mapping[Quantity, Sequence[float]],
    factor_values: Mapping[str, str],
) -> DropReason | None:
    cites = citations(sentence)
    if any(c not in retrieved for c in cites):
        return "unretrieved_citation"
    text = _without_factor_values(_BRACKET.sub(" ", sentence), factor_values)
    numbers = _stated(text)
    anyone = [float(v) for values in quantities.values() for v in values]
    for position, value, tolerance in numbers:
        quantity = said_to_be(text, position)
        candidates = anyone if quantity is None else [float(v) for v in quantities.get(quantity, ())]
        if not any(abs(c - value) <= tolerance + 1e-12 for c in candidates):
            return "unverified_number"
    if not cites and not numbers:
        return "uncited"
    return None


def _without_factor_values(text: str, factor_values: Mapping[str, str]) -> str:
    """`text` with the reported value of each factor it names blanked (never a percentage)."""
    for named, value in factor_values.items():
        if value and re.search(rf"(?<!\w){re.escape(named)}(?!\w)", text, re.I):
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w.]|\s?(?:%|percent\b))", " ", text)
    return text


def _decimals(number: str) -> int:
    return len(number.partition(".")[2])
