"""Verification of a narrative before it is returned, whoever wrote it (Bedrock or the local writer).

A narrative is checked sentence by sentence:
- every citation `[passage id]` must name a passage that was retrieved for this request;
- every probability or percentage must equal (as rounded in the text) one of the model's numbers
  or the similar patients' (rate and interval bounds); "95%" of a confidence interval is a level,
  not a probability;
- a sentence that cites nothing must state one of those numbers: anything else is a clinical
  claim without a source.
A sentence failing a check is dropped, and the reason is counted. What survives is what can be
traced to a retrieved source or to the model's own numbers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

DropReason = Literal["unretrieved_citation", "unverified_number", "uncited"]

_BRACKET = re.compile(r"\[([^\[\]]{1,400})\]")
_CITATION_ID = re.compile(r"^[A-Za-z0-9][\w.-]*#[\w-]+$")
_PERCENT = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s?(?:%|percent\b)(?!\s*(?:CI\b|confidence|credible))", re.I)
_FRACTION = re.compile(r"(?<![\w.])(0\.\d+|1\.0+)(?![\w.%])")
_TRAILING_CITATIONS = re.compile(r"([.!?])\s*((?:\[[^\[\]]{1,400}\]\s*)+)(?=\s|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[(\"“])")


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
    """(value as a probability, half of its last shown digit) for each percentage or fraction;
    bracketed citations are left out (their ids hold digits)."""
    text = _BRACKET.sub(" ", sentence)
    numbers = [(float(m), 0.5 * 10.0 ** -_decimals(m)) for m in _FRACTION.findall(text)]
    numbers += [(float(m) / 100, 0.5 * 10.0 ** -_decimals(m) / 100) for m in _PERCENT.findall(text)]
    return numbers


def verify(text: str, *, retrieved: Collection[str], allowed_numbers: Iterable[float]) -> Verified:
    allowed = [float(a) for a in allowed_numbers]
    kept: list[str] = []
    cited: dict[str, None] = {}
    dropped: dict[DropReason, int] = {}
    for sentence in sentences(text):
        reason = _problem(sentence, retrieved, allowed)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        kept.append(sentence)
        cited.update(dict.fromkeys(citations(sentence)))
    return Verified(text=" ".join(kept), cited=tuple(cited), dropped=dropped)


def _problem(sentence: str, retrieved: Collection[str], allowed: list[float]) -> DropReason | None:
    cites = citations(sentence)
    if any(c not in retrieved for c in cites):
        return "unretrieved_citation"
    numbers = stated_numbers(sentence)
    if any(not any(abs(a - value) <= tolerance + 1e-12 for a in allowed) for value, tolerance in numbers):
        return "unverified_number"
    if not cites and not numbers:
        return "uncited"
    return None


def _decimals(number: str) -> int:
    return len(number.partition(".")[2])
