"""The promotion gate: may a newly trained model replace the champion?

A pure function of metrics and `GateRules` (no I/O), so the evaluate Lambda, the local runner
and the tests all get the same answer. Every check is reported, passing or not, as a
sentence a reviewer can read in the approval e-mail.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from clinrisk.evaluation.metrics import ClassificationMetrics, SubgroupMetrics
from clinrisk.settings import GateRules

# Comparisons allow this much float rounding, so a value exactly at a limit (e.g. a drop of
# 0.70 − 0.69 against an allowed 0.01) passes as the rule intends.
_EPSILON = 1e-9


def _amount(difference: float) -> str:
    """A shortfall or excess, with enough digits that a tiny miss does not print as 0.000."""
    return f"{difference:.3f}" if difference >= 0.0005 else f"{difference:.1e}"


class GateCheck(BaseModel):
    """One rule's outcome. `value` and `limit` are None when the rule had nothing to measure."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str


class GateDecision(BaseModel):
    passed: bool
    reasons: list[str]
    checks: list[GateCheck]


def _auc_floor(candidate: ClassificationMetrics, rules: GateRules) -> GateCheck:
    auc, floor = candidate.roc_auc, rules.auc_floor
    passed = auc >= floor - _EPSILON
    if passed:
        detail = f"test AUC {auc:.3f} ≥ floor {floor:.3f}"
    else:
        detail = f"test AUC {auc:.3f} is below the floor {floor:.3f} by {_amount(floor - auc)}"
    return GateCheck(name="auc_floor", passed=passed, value=auc, limit=floor, detail=detail)


def _auc_regression(
    candidate: ClassificationMetrics, champion: ClassificationMetrics | None, rules: GateRules
) -> GateCheck:
    allowed = rules.max_auc_regression
    if champion is None:
        return GateCheck(
            name="auc_regression",
            passed=True,
            value=None,
            limit=allowed,
            detail="no champion yet, so there is no AUC regression to check",
        )
    # The caller scores the champion on the candidate's test set; a different n or positive
    # count means it did not, and the comparison would be meaningless.
    if (champion.n, champion.positives) != (candidate.n, candidate.positives):
        return GateCheck(
            name="auc_regression",
            passed=False,
            value=None,
            limit=allowed,
            detail=(
                f"champion was scored on a different test set (n={champion.n}, "
                f"positives={champion.positives}) than the candidate (n={candidate.n}, "
                f"positives={candidate.positives}), so the AUCs cannot be compared"
            ),
        )
    drop = champion.roc_auc - candidate.roc_auc
    passed = drop <= allowed + _EPSILON
    compared = f"test AUC {candidate.roc_auc:.3f} vs champion {champion.roc_auc:.3f}"
    if drop <= 0:
        detail = f"{compared}: no drop (+{-drop:.3f})"
    elif passed:
        detail = f"{compared}: drop {drop:.3f} ≤ allowed {allowed:.3f}"
    else:
        detail = f"{compared}: drop {drop:.3f} exceeds the allowed {allowed:.3f} by {_amount(drop - allowed)}"
    return GateCheck(name="auc_regression", passed=passed, value=drop, limit=allowed, detail=detail)


def _subgroup_gap(attribute: str, levels: list[SubgroupMetrics], rules: GateRules) -> GateCheck:
    limit = rules.gap_limit(attribute)
    name = f"subgroup_auc_gap:{attribute}"
    # (AUC, level) pairs of the gated levels; min/max then pick the extremes by AUC.
    gated = [(s.roc_auc, s.level) for s in levels if s.gated and s.roc_auc is not None]
    skipped = len(levels) - len(gated)
    not_gated = f"; {skipped} small subgroup(s) not gated" if skipped else ""
    if len(gated) < 2:
        return GateCheck(
            name=name,
            passed=True,
            value=None,
            limit=limit,
            detail=f"{attribute}: fewer than 2 subgroups large enough to gate, gap not checked{not_gated}",
        )
    (low_auc, low_level), (high_auc, high_level) = min(gated), max(gated)
    gap = high_auc - low_auc
    passed = gap <= limit + _EPSILON
    spread = (
        f"{attribute} AUC gap {gap:.3f} ({high_level} {high_auc:.3f} vs "
        f"{low_level} {low_auc:.3f}, over {len(gated)} gated subgroups{not_gated})"
    )
    if passed:
        detail = f"{spread} ≤ limit {limit:.3f}"
    else:
        detail = f"{spread} exceeds the limit {limit:.3f} by {_amount(gap - limit)}"
    return GateCheck(name=name, passed=passed, value=gap, limit=limit, detail=detail)


def _subgroup_gaps(subgroups: Sequence[SubgroupMetrics], rules: GateRules) -> list[GateCheck]:
    by_attribute: dict[str, list[SubgroupMetrics]] = {}
    for subgroup in subgroups:
        by_attribute.setdefault(subgroup.attribute, []).append(subgroup)
    return [_subgroup_gap(attribute, levels, rules) for attribute, levels in by_attribute.items()]


def decide(
    candidate: ClassificationMetrics,
    subgroups: Sequence[SubgroupMetrics],
    rules: GateRules,
    champion: ClassificationMetrics | None,
) -> GateDecision:
    """Apply every rule of `rules`; the candidate passes only if all checks pass.

    `champion` must have been scored on the same test set as `candidate` (the caller's job);
    None means there is no champion yet.
    """
    checks = [
        _auc_floor(candidate, rules),
        _auc_regression(candidate, champion, rules),
        *_subgroup_gaps(subgroups, rules),
    ]
    return GateDecision(
        passed=all(check.passed for check in checks),
        reasons=[check.detail for check in checks],
        checks=checks,
    )
