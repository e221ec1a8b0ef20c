"""`clinrisk monitor report`: one self-contained HTML page (plots inline as base64 PNG, no scripts,
no external requests) of a monitor result and its history:

- PSI per field against the drift threshold and each field's noise level;
- reference against current shares for the most drifted fields;
- the score distribution;
- estimated (CBPE) and realized AUC per day;
- high-risk rates per subgroup, reference against current.

Figures use matplotlib's object API on the Agg canvas, as `clinrisk.evaluation.plots` does.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from clinrisk.monitoring.monitor import FieldDrift, MonitorResult
from clinrisk.monitoring.outcomes import RealizedPerformance

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.axes import Axes

REFERENCE_COLOR = "#7f8c8d"
CURRENT_COLOR = "#c0392b"
ESTIMATED_COLOR = "#2471a3"
SHOWN_FIELDS = 4


class DailyPerformance(BaseModel):
    day: str
    records: int
    estimated_auc: float | None
    realized_auc: float | None
    outcomes: int


def _png(draw: Callable[[Axes], None], *, width: float = 7.0, height: float = 3.2) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    draw(axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    figure.clear()
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _psi_chart(result: MonitorResult, threshold: float) -> str:
    fields = sorted(result.fields, key=lambda f: f.psi)

    def draw(ax: Axes) -> None:
        y = np.arange(len(fields))
        ax.barh(y, [f.psi for f in fields], color=[CURRENT_COLOR if f.drifted else REFERENCE_COLOR for f in fields])
        ax.scatter([f.critical for f in fields], y, marker="|", color="black", s=60, label="noise level (critical PSI)")
        ax.axvline(threshold, color=CURRENT_COLOR, linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_yticks(y, [f.field for f in fields], fontsize=7)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("PSI against the training reference")
        ax.legend(loc="lower right", fontsize=8)

    return _png(draw, height=max(4.0, 0.16 * len(fields) + 1))


def _shares_chart(drift: FieldDrift) -> str:
    def draw(ax: Axes) -> None:
        x = np.arange(len(drift.labels))
        ax.bar(x - 0.2, drift.reference_shares, width=0.4, color=REFERENCE_COLOR, label="training reference")
        ax.bar(x + 0.2, drift.current_shares, width=0.4, color=CURRENT_COLOR, label="this window")
        ax.set_xticks(x, drift.labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share of records")
        ax.set_title(f"{drift.field}: PSI {drift.psi:.3f}", fontsize=10)
        ax.legend(fontsize=8)

    return _png(draw, width=5.6, height=3.4)


def _score_chart(result: MonitorResult) -> str:
    def draw(ax: Axes) -> None:
        x = np.arange(len(result.score_shares))
        ax.bar(x - 0.2, result.reference_score_shares, width=0.4, color=REFERENCE_COLOR, label="training reference")
        ax.bar(x + 0.2, result.score_shares, width=0.4, color=CURRENT_COLOR, label="this window")
        ax.set_xlabel("score decile of the reference (low → high risk)")
        ax.set_ylabel("share of records")
        ax.legend(fontsize=8)

    return _png(draw)


def _performance_chart(days: list[DailyPerformance]) -> str:
    def draw(ax: Axes) -> None:
        x = np.arange(len(days))
        estimated = [np.nan if d.estimated_auc is None else d.estimated_auc for d in days]
        realized = [np.nan if d.realized_auc is None else d.realized_auc for d in days]
        ax.plot(x, estimated, marker="o", color=ESTIMATED_COLOR, label="estimated (CBPE, no outcomes needed)")
        ax.plot(x, realized, marker="s", color=CURRENT_COLOR, label="realized (joined outcomes)")
        ax.set_xticks(x, [d.day[5:] for d in days], fontsize=7)
        ax.set_ylabel("ROC-AUC")
        ax.set_ylim(0.5, 1.0)
        ax.legend(fontsize=8)

    return _png(draw)


def _subgroup_chart(attribute: str, reference: dict[str, float], current: dict[str, float]) -> str:
    levels = sorted(set(reference) | set(current))

    def draw(ax: Axes) -> None:
        x = np.arange(len(levels))
        ax.bar(x - 0.2, [reference.get(v, 0.0) for v in levels], width=0.4, color=REFERENCE_COLOR, label="reference")
        ax.bar(x + 0.2, [current.get(v, 0.0) for v in levels], width=0.4, color=CURRENT_COLOR, label="this window")
        ax.set_xticks(x, levels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("high-risk rate")
        ax.set_title(attribute, fontsize=10)
        ax.legend(fontsize=8)

    return _png(draw, width=5.6, height=3.2)


def _figure(value: float | None, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if percent else f"{value:.{digits}f}"


def render_report(
    result: MonitorResult,
    days: list[DailyPerformance],
    *,
    threshold: float,
    generated: datetime,
    realized: RealizedPerformance | None = None,
) -> str:
    """`realized`: the model's performance on the outcomes joined over the outcome window, if any."""
    e = html.escape
    head = (
        f"<h1>clinrisk monitoring: {e(result.task)}, model v{result.model_version}</h1>"
        f"<p class=meta>window {result.window_start:%Y-%m-%d %H:%M} – {result.window_end:%Y-%m-%d %H:%M} UTC · "
        f"{result.rows:,} scored records · generated {generated:%Y-%m-%d %H:%M} UTC</p>"
    )
    if not result.published:
        return _page(head + f"<p class=warn>Nothing to show: {e(result.reason)}.</p>")
    drifted = ", ".join(result.drifted_fields) or "none"
    tiles = [
        ("Max field PSI", _figure(result.feature_drift)),
        ("Drifted fields", e(drifted)),
        ("Score PSI", _figure(result.score_psi)),
        ("High-risk rate", f"{_figure(result.high_risk_rate, percent=True)}"
                           f" (training {_figure(result.expected_high_risk_rate, percent=True)})"),
        ("Estimated AUC", f"{_figure(result.estimated_auc)} (training {_figure(result.reference_estimated_auc)})"),
        ("Attribution NDCG", _figure(result.attribution_ndcg)),
        ("Refused (422)", _figure(result.refused_share, percent=True)),
        *_realized_tiles(realized),
    ]  # fmt: skip
    tile_html = "".join(f"<div class=tile><div class=label>{k}</div><div class=value>{v}</div></div>" for k, v in tiles)
    shown = sorted(result.fields, key=lambda f: -f.psi)[:SHOWN_FIELDS]
    subgroups = "".join(
        _subgroup_chart(a, result.reference_subgroup_high_rates.get(a, {}), rates)
        for a, rates in result.subgroup_high_rates.items()
    )
    body = (
        head
        + f"<div class=tiles>{tile_html}</div>"
        + "<h2>Drift per input field</h2><p>Red bars drift: above the threshold and above the field's noise level "
        "for a window of this size.</p>" + _psi_chart(result, threshold)
        + "<h2>Most drifted fields: training reference against this window</h2>"
        + "<div class=grid>" + "".join(_shares_chart(f) for f in shown) + "</div>"
        + "<h2>Score distribution</h2>" + _score_chart(result)
        + "<h2>Estimated and realized AUC per day</h2>" + _performance_chart(days)
        + "<h2>High-risk rate per subgroup</h2><div class=grid>" + subgroups + "</div>"
    )  # fmt: skip
    return _page(body)


def _realized_tiles(realized: RealizedPerformance | None) -> list[tuple[str, str]]:
    if realized is None:
        return [("Realized AUC", "no outcomes joined")]
    gaps = ", ".join(f"{a} {_figure(g)}" for a, g in realized.subgroup_auc_gap.items()) or "–"
    return [
        ("Realized AUC", f"{_figure(realized.auc)} ({realized.outcomes:,} outcomes)"),
        ("Observed / expected", _figure(realized.observed_to_expected, digits=2)),
        ("Subgroup AUC gap", html.escape(gaps)),
    ]


def _page(body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1180px}"
        "h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}"
        ".meta{color:#666}.warn{color:#c0392b}.tiles{display:flex;flex-wrap:wrap;gap:10px}"
        ".tile{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:140px}"
        ".label{font-size:12px;color:#666}.value{font-size:18px;font-weight:600}"
        ".grid{display:flex;flex-wrap:wrap;gap:8px}img{max-width:100%}"
    )
    head = f"<meta charset=utf-8><title>clinrisk monitoring</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def daily_performance(captures: pa.Table, outcomes: pa.Table, *, version: int) -> list[DailyPerformance]:
    """Per capture day: CBPE's estimated AUC over the day's answered records of `version`, and the
    realized AUC of those joined to an outcome (None with fewer than both classes)."""
    import pyarrow.compute as pc

    from clinrisk.evaluation.metrics import roc_auc
    from clinrisk.monitoring.stats import expected_auc

    mask = pc.and_(
        pc.and_(pc.equal(captures.column("kind"), "scored"), pc.equal(captures.column("role"), "answer")),
        pc.equal(captures.column("model_version"), version),
    )
    frame = captures.filter(mask).select(["record_key", "date", "probability"]).to_pandas()
    labels = outcomes.to_pandas().drop_duplicates("record_key", keep="last").set_index("record_key")["label"]
    days = []
    for day, group in frame.groupby("date", sort=True):
        joined = group.join(labels, on="record_key", how="inner")
        both = 0 < joined["label"].sum() < len(joined)
        days.append(
            DailyPerformance(
                day=str(day),
                records=len(group),
                estimated_auc=expected_auc(group["probability"].to_numpy()) if len(group) > 1 else None,
                realized_auc=roc_auc(joined["label"].to_numpy(), joined["probability"].to_numpy()) if both else None,
                outcomes=len(joined),
            )
        )
    return days
