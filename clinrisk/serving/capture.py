"""What the prediction API hands to capture: the answer (champion or canary) and the shadow's scores.

The rows are made on the capture thread from the request and response objects the API already
holds; the request path pays for two queue appends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clinrisk.capture.capturer import Capturer
from clinrisk.capture.records import ScoredRecord, Source
from clinrisk.capture.task_inputs import captured_columns, input_values

if TYPE_CHECKING:
    from clinrisk.serving.scoring import Scored
    from clinrisk.taskspec.spec import TaskSpec


def capture_scored(
    capturer: Capturer,
    *,
    request_id: str,
    version: int,
    records: Callable[[], tuple[Sequence[dict[str, Any]], Sequence[int]]],
    scored: Sequence[Scored],
    source: Source,
    shadow: tuple[int, Sequence[Scored]] | None = None,
    task: str | None = None,
) -> None:
    """Queue one scoring call: `records()` gives the encounters as entered and their prior counts.
    Readmission's; a generic task's records go through `capture_task_scored`."""

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

    capturer.scored(
        request_id=request_id, version=version, items=items(scored), count=len(scored), source=source, task=task
    )
    if shadow is not None:
        capturer.scored(
            request_id=request_id, version=shadow[0], items=items(shadow[1]), count=len(shadow[1]), source=source,
            role="shadow", task=task,
        )  # fmt: skip


def capture_task_scored(
    capturer: Capturer,
    *,
    task: str,
    spec: TaskSpec,
    request_id: str,
    version: int,
    records: Sequence[Mapping[str, Any]],
    scored: Sequence[Scored],
    source: Source,
) -> None:
    """Queue one scoring call of a generic task (`spec`): its validated records' ids (keyed by capture,
    never stored) and input values (for drift), scores and factors, under the task's name."""

    def make() -> list[ScoredRecord]:
        columns = captured_columns(spec)
        return [
            ScoredRecord(
                record={},
                prior_encounters=0,
                probability=result.probability,
                band=result.band,
                factors=[(f.factor, f.contribution) for f in result.factors],
                ids=(str(record[spec.record_id]), str(record.get(spec.group_id, record[spec.record_id]))),
                inputs=input_values(columns, record),
            )
            for record, result in zip(records, scored, strict=True)
        ]

    capturer.scored(request_id=request_id, version=version, items=make, count=len(scored), source=source, task=task)
