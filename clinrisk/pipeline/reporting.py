"""Readable summaries for people (the JSON forms are the pydantic models themselves)."""

from __future__ import annotations

from clinrisk.pipeline.local import PipelineResult
from clinrisk.settings import Settings

_VERDICTS = {
    "promoted": "promoted to champion",
    "rejected": "registered, rejected by the gate (not promoted)",
    "stale": "registered, not promoted: another run changed the champion meanwhile",
    "failed": "failed",
}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def pipeline_summary(result: PipelineResult, settings: Settings) -> str:
    m = result.metrics
    lines = [
        f"run {result.run_id}: {result.model_name} v{result.model_version} {_VERDICTS[result.outcome]}",
        f"  rows: {', '.join(f'{k} {v:,}' for k, v in result.rows.items())}",
        f"  test ROC-AUC {_fmt(m.get('test_roc_auc'))} "
        f"(95% CI {_fmt(m.get('test_roc_auc_ci_low'))}–{_fmt(m.get('test_roc_auc_ci_high'))}), "
        f"PR-AUC {_fmt(m.get('test_pr_auc'))}, Brier {_fmt(m.get('test_brier'))}, ECE {_fmt(m.get('test_ece'))}",
        f"  at threshold {settings.operating_threshold}: sensitivity {_fmt(m.get('test_sensitivity'))}, "
        f"specificity {_fmt(m.get('test_specificity'))}, PPV {_fmt(m.get('test_ppv'))}",
        f"  logistic baseline AUC {_fmt(m.get('baseline_test_roc_auc'))}; "
        f"champion before: {result.champion_before or 'none'} (AUC {_fmt(m.get('champion_test_roc_auc'))}); "
        f"champion now: {result.champion_after or 'none'}",
        "  gate:",
        *[f"    - {reason}" for reason in result.gate_reasons],
        f"  seconds: {', '.join(f'{k} {v:.1f}' for k, v in result.stage_seconds.items())}",
        f"  MLflow: mlflow ui --backend-store-uri {settings.tracking_uri}",
    ]
    return "\n".join(lines)
