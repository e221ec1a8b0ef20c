"""What the prediction API hands to capture: the answer (champion or canary) and the shadow's scores.

The rows are made on the capture thread from the request and response objects the API already
holds; the request path pays for two queue appends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from clinrisk.capture.capturer import Capturer
from clinrisk.capture.records import ScoredRecord, Source

if TYPE_CHECKING:
    from clinrisk.serving.scoring import Scored


def capture_scored(
    capturer: Capturer,
    *,
    request_id: str,
    version: int,
    records: Callable[[], tuple[Sequence[dict[str, Any]], Sequence[int]]],
    scored: Sequence[Scored],
    source: Source,
    shadow: tuple[int, Sequence[Scored]] | None = None,
) -> None:
    """Queue one scoring call: `records()` gives the encounters as entered and their prior counts."""

    def items(results: Sequence[Scored]) -> Callable[[], list[ScoredRecord]]:
        def make() -> list[ScoredRecord]:
            rows, priors = records()
            return [
                ScoredRecord(
                    record=row,
                    prior_encounters=prior,
                    probability=result.probability,
                    band=result.band,
                    factors=[(f.factor, f.contribution) for f in result.factors],
                )
                for row, prior, result in zip(rows, priors, results, strict=True)
            ]

        return make

    capturer.scored(request_id=request_id, version=version, items=items(scored), count=len(scored), source=source)
    if shadow is not None:
        capturer.scored(
            request_id=request_id, version=shadow[0], items=items(shadow[1]), count=len(shadow[1]), source=source,
            role="shadow",
        )  # fmt: skip
