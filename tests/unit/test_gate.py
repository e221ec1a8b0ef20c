"""The promotion gate: every rule, its edges, and the sentences it reports."""

from __future__ import annotations

import json

import pytest

from clinrisk.evaluation.gate import GateDecision, decide
from clinrisk.evaluation.metrics import ClassificationMetrics, SubgroupMetrics, ThresholdMetrics
from clinrisk.settings import GateRules

RULES = GateRules(auc_floor=0.65, max_auc_regression=0.01, max_subgroup_auc_gap=0.10)


def _metrics(auc: float, n: int = 20_000, positives: int = 2_200) -> ClassificationMetrics:
    return ClassificationMetrics(
        n=n,
        positives=positives,
        prevalence=positives / n,
        roc_auc=auc,
        roc_auc_ci_low=auc - 0.01,
        roc_auc_ci_high=auc + 0.01,
        pr_auc=0.2,
        brier=0.09,
        ece=0.01,
        at_threshold=ThresholdMetrics(
            threshold=0.2,
            sensitivity=0.5,
            specificity=0.8,
            ppv=0.25,
            npv=0.93,
            f1=0.33,
            flagged_rate=0.22,
            tp=1100,
            fp=3300,
            tn=14500,
            fn=1100,
        ),
    )


def _level(attribute: str, level: str, auc: float | None, gated: bool = True) -> SubgroupMetrics:
    return SubgroupMetrics(
        attribute=attribute,
        level=level,
        n=2000 if gated else 50,
        positives=220 if gated else 5,
        prevalence=0.11,
        roc_auc=auc,
        flagged_rate=0.2,
        sensitivity=0.5,
        gated=gated,
    )


FAIR = [
    _level("race", "Caucasian", 0.70),
    _level("race", "AfricanAmerican", 0.66),
    _level("gender", "Female", 0.69),
    _level("gender", "Male", 0.70),
]


def _check(decision: GateDecision, name: str) -> tuple[bool, str]:
    (check,) = [c for c in decision.checks if c.name == name]
    return check.passed, check.detail


def test_a_good_candidate_passes_and_every_check_is_reported() -> None:
    decision = decide(_metrics(0.701), FAIR, RULES, champion=_metrics(0.705))
    assert decision.passed
    assert [c.name for c in decision.checks] == [
        "auc_floor",
        "auc_regression",
        "subgroup_auc_gap:race",
        "subgroup_auc_gap:gender",
    ]
    assert all(c.passed for c in decision.checks)
    assert decision.reasons == [c.detail for c in decision.checks]
    assert decision.reasons[0] == "test AUC 0.701 ≥ floor 0.650"
    assert "drop 0.004 ≤ allowed 0.010" in decision.reasons[1]
    assert "race AUC gap 0.040 (Caucasian 0.700 vs AfricanAmerican 0.660" in decision.reasons[2]
    # It serialises for the state machine and the approval e-mail.
    assert GateDecision.model_validate(json.loads(decision.model_dump_json())) == decision


def test_fails_below_the_auc_floor_and_says_by_how_much() -> None:
    decision = decide(_metrics(0.62), FAIR, RULES, champion=None)
    assert not decision.passed
    passed, detail = _check(decision, "auc_floor")
    assert not passed
    assert detail == "test AUC 0.620 is below the floor 0.650 by 0.030"


def test_auc_exactly_at_the_floor_passes() -> None:
    assert _check(decide(_metrics(0.65), FAIR, RULES, champion=None), "auc_floor")[0]


def test_fails_when_the_candidate_regresses_against_the_champion() -> None:
    decision = decide(_metrics(0.70), FAIR, RULES, champion=_metrics(0.72))
    assert not decision.passed
    passed, detail = _check(decision, "auc_regression")
    assert not passed
    assert detail == "test AUC 0.700 vs champion 0.720: drop 0.020 exceeds the allowed 0.010 by 0.010"
    # The other checks still passed and are still reported.
    assert _check(decision, "auc_floor")[0]


@pytest.mark.parametrize(
    ("candidate", "champion", "passes"),
    [
        (0.69, 0.70, True),  # a drop of exactly the tolerance (0.70 − 0.69 ≠ 0.01 in floats)
        (0.7099, 0.7199, True),
        (0.6899, 0.70, False),  # just over the tolerance
        (0.75, 0.70, True),  # an improvement
    ],
)
def test_regression_tolerance_edge(candidate: float, champion: float, passes: bool) -> None:
    decision = decide(_metrics(candidate), FAIR, RULES, champion=_metrics(champion))
    assert _check(decision, "auc_regression")[0] is passes
    assert decision.passed is passes


def test_tiny_failures_do_not_print_as_zero() -> None:
    decision = decide(_metrics(0.6899), FAIR, RULES, champion=_metrics(0.70))
    assert "by 1.0e-04" in _check(decision, "auc_regression")[1]


def test_no_champion_passes_the_regression_check_with_a_reason() -> None:
    decision = decide(_metrics(0.70), FAIR, RULES, champion=None)
    assert decision.passed
    passed, detail = _check(decision, "auc_regression")
    assert passed
    assert "no champion yet" in detail


def test_champion_scored_on_another_test_set_fails_the_comparison() -> None:
    decision = decide(_metrics(0.70), FAIR, RULES, champion=_metrics(0.70, n=15_000))
    assert not decision.passed
    assert "different test set" in _check(decision, "auc_regression")[1]


def test_fails_when_a_gated_subgroup_gap_is_too_wide() -> None:
    subgroups = [*FAIR[2:], _level("race", "Caucasian", 0.74), _level("race", "AfricanAmerican", 0.61)]
    decision = decide(_metrics(0.70), subgroups, RULES, champion=None)
    assert not decision.passed
    passed, detail = _check(decision, "subgroup_auc_gap:race")
    assert not passed
    assert detail == (
        "race AUC gap 0.130 (Caucasian 0.740 vs AfricanAmerican 0.610, over 2 gated subgroups) "
        "exceeds the limit 0.100 by 0.030"
    )
    assert _check(decision, "subgroup_auc_gap:gender")[0]


def test_an_attribute_can_have_its_own_gap_limit() -> None:
    age_gap = [_level("age_band", "[40-50)", 0.74), _level("age_band", "[90-100)", 0.61)]
    # Age bands default to 0.20 (see GateRules.subgroup_gap_limits): a 0.13 gap passes.
    assert decide(_metrics(0.70), [*FAIR, *age_gap], RULES, champion=None).passed
    wider = [_level("age_band", "[40-50)", 0.80), _level("age_band", "[90-100)", 0.55)]
    decision = decide(_metrics(0.70), [*FAIR, *wider], RULES, champion=None)
    passed, detail = _check(decision, "subgroup_auc_gap:age_band")
    assert not passed
    assert "limit 0.200" in detail
    strict = RULES.model_copy(update={"subgroup_gap_limits": {}})
    assert not decide(_metrics(0.70), [*FAIR, *age_gap], strict, champion=None).passed


def test_subgroup_gap_exactly_at_the_limit_passes() -> None:
    subgroups = [_level("race", "A", 0.80), _level("race", "B", 0.70)]  # 0.8 − 0.7 > 0.1 in floats
    assert decide(_metrics(0.70), subgroups, RULES, champion=None).passed


def test_non_gated_subgroups_are_ignored() -> None:
    # A tiny level with a terrible AUC must not fail the gate; it is mentioned, though.
    subgroups = [
        *FAIR,
        _level("race", "Asian", 0.40, gated=False),
        _level("race", "Other", None, gated=False),
    ]
    decision = decide(_metrics(0.70), subgroups, RULES, champion=None)
    assert decision.passed
    passed, detail = _check(decision, "subgroup_auc_gap:race")
    assert passed
    assert "2 small subgroup(s) not gated" in detail
    assert "Asian" not in detail


def test_an_attribute_with_fewer_than_two_gated_levels_is_not_checked() -> None:
    subgroups = [*FAIR, _level("age_band", "[60-80)", 0.70), _level("age_band", "[0-40)", 0.30, gated=False)]
    decision = decide(_metrics(0.70), subgroups, RULES, champion=None)
    assert decision.passed
    passed, detail = _check(decision, "subgroup_auc_gap:age_band")
    assert passed
    assert "fewer than 2 subgroups large enough to gate" in detail


def test_all_failures_are_reported_together() -> None:
    subgroups = [_level("race", "A", 0.80), _level("race", "B", 0.55)]
    decision = decide(_metrics(0.60), subgroups, RULES, champion=_metrics(0.70))
    assert not decision.passed
    assert [c.passed for c in decision.checks] == [False, False, False]
