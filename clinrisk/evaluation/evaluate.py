"""Evaluation of a trained candidate on the held-out test patients, with its logistic baseline
and the current champion scored on the very same rows (`clinrisk.model.held_out`), and the gate's
decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from clinrisk.data.task_port import Examples
from clinrisk.evaluation.gate import GateDecision, decide
from clinrisk.evaluation.metrics import (
    ClassificationMetrics,
    SubgroupMetrics,
    classification_report,
    max_subgroup_auc_gap,
    subgroup_report,
)
from clinrisk.settings import Settings


class EvaluationReport(BaseModel):
    candidate: ClassificationMetrics
    logistic_baseline: ClassificationMetrics
    champion: ClassificationMetrics | None
    champion_version: int | None
    subgroups: list[SubgroupMetrics]
    subgroup_auc_gaps: dict[str, float | None]
    gate: GateDecision
    operating_threshold: float


@dataclass(frozen=True)
class ScoredTestSet:
    """The test set, the task's examples of the held-out patients (`Task.examples`: `groups` are the
    patients), with each model's scores on its rows."""

    test: Examples
    candidate: np.ndarray
    logistic: np.ndarray
    champion: np.ndarray | None


def evaluate_scores(scored: ScoredTestSet, settings: Settings, champion_version: int | None) -> EvaluationReport:
    test = scored.test

    def report(scores: np.ndarray) -> ClassificationMetrics:
        return classification_report(
            test.labels,
            scores,
            test.groups,
            threshold=settings.operating_threshold,
            bootstrap_rounds=settings.bootstrap_rounds,
            seed=settings.seed,
        )

    candidate = report(scored.candidate)
    champion = None if scored.champion is None else report(scored.champion)
    subgroups = subgroup_report(
        test.labels,
        scored.candidate,
        test.subgroups,
        threshold=settings.operating_threshold,
        min_size=settings.gate.subgroup_min_size,
        min_positives=settings.gate.subgroup_min_positives,
    )
    return EvaluationReport(
        candidate=candidate,
        logistic_baseline=report(scored.logistic),
        champion=champion,
        champion_version=champion_version,
        subgroups=subgroups,
        subgroup_auc_gaps=max_subgroup_auc_gap(subgroups),
        gate=decide(candidate, subgroups, settings.gate, champion),
        operating_threshold=settings.operating_threshold,
    )
