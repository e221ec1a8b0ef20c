"""Evaluation of a trained candidate on the held-out test patients, with its logistic baseline
and the current champion scored on the very same rows (`clinrisk.model.held_out`), and the gate's
decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel

from clinrisk.data.task_binding import resolve_task
from clinrisk.data.task_port import Examples, Task
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
class TestSet:
    """The test records a model is scored on (rows the task excludes removed after features), with
    each record's group (patient) and its level of every subgroup attribute."""

    __test__ = False  # not a pytest test class, despite the name

    encounters: pd.DataFrame
    features: pd.DataFrame
    labels: np.ndarray
    patients: np.ndarray
    subgroups: dict[str, np.ndarray]

    @classmethod
    def from_examples(cls, examples: Examples) -> TestSet:
        return cls(
            encounters=examples.rows,
            features=examples.features,
            labels=examples.labels,
            patients=examples.groups,
            subgroups=examples.subgroups,
        )

    @classmethod
    def from_encounters(cls, frame: pd.DataFrame, task: Task | None = None) -> TestSet:
        return cls.from_examples((task or resolve_task()).examples(frame))


@dataclass(frozen=True)
class ScoredTestSet:
    test: TestSet
    candidate: np.ndarray
    logistic: np.ndarray
    champion: np.ndarray | None


def evaluate_scores(scored: ScoredTestSet, settings: Settings, champion_version: int | None) -> EvaluationReport:
    test = scored.test

    def report(scores: np.ndarray) -> ClassificationMetrics:
        return classification_report(
            test.labels,
            scores,
            test.patients,
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
