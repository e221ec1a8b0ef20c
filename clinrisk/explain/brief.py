"""What a narrative writer is given: the prediction, its factors, the passages and the similar
patients, and the numbers a narrative may state."""

from __future__ import annotations

from dataclasses import dataclass

from clinrisk.explain.corpus import Chunk
from clinrisk.explain.similar import SimilarPatients
from clinrisk.explain.task_words import READMISSION_WORDS, TaskWords
from clinrisk.explain.verification import Quantity
from clinrisk.serving.scoring import RiskFactor


@dataclass(frozen=True)
class Brief:
    task: str
    probability: float
    band: str
    factors: tuple[RiskFactor, ...]
    passages: tuple[Chunk, ...]
    # factor name → ids of the passages retrieved for it, best first
    passages_by_factor: dict[str, tuple[str, ...]]
    similar: SimilarPatients | None
    words: TaskWords = READMISSION_WORDS

    @property
    def passage_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.passages)

    @property
    def quantities(self) -> dict[Quantity, tuple[float, ...]]:
        """The only probabilities a narrative may state, by what they are: the model's and the similar patients'."""
        quantities: dict[Quantity, tuple[float, ...]] = {"probability": (self.probability,)}
        if self.similar is not None:
            quantities["similar_rate"] = (self.similar.outcome_rate,)
            quantities["interval"] = (self.similar.rate_ci_low, self.similar.rate_ci_high)
        return quantities

    @property
    def factor_values(self) -> dict[str, str]:
        """Each factor's label and name -> its value as reported: measurements a narrative may state."""
        return {named: f.value for f in self.factors for named in (f.label, f.factor)}

    def passage(self, chunk_id: str) -> Chunk:
        return next(p for p in self.passages if p.id == chunk_id)
