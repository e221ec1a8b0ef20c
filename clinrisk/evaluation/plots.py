"""Evaluation plots as PNG files: ROC curve, precision-recall curve, reliability diagram.

matplotlib and scikit-learn are imported inside the functions, so importing this module costs nothing on the
serving path. Figures are built with the object-oriented `Figure` API and rendered by Agg:
pyplot is never touched, so no window can open, no global figure registry grows, and the
figure is freed when the function returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from clinrisk.evaluation.metrics import calibration_bins, expected_calibration_error

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_FIGSIZE = (6.0, 5.0)
_DPI = 100
_MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.10, "top": 0.93, "hspace": 0.08}
_MODEL_COLOR = "tab:blue"
_BASELINE_COLOR = "tab:orange"
_MODEL_LABEL = "model"
_BASELINE_LABEL = "baseline (logistic regression)"


def _new_figure(nrows: int = 1, height_ratios: list[float] | None = None) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=_FIGSIZE, dpi=_DPI)
    FigureCanvasAgg(figure)  # attach Agg explicitly, whatever the default backend is
    # Fixed margins: a layout engine (constrained/tight) measures every label and costs ~0.2 s a figure.
    axes = figure.subplots(
        nrows, 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": height_ratios, **_MARGINS}
    )
    return figure, list(axes[:, 0])


def _save(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    figure.clear()  # drop artists now rather than waiting for the garbage collector
    return target


def _curves(y_score: npt.ArrayLike, baseline_score: npt.ArrayLike | None) -> list[tuple[npt.ArrayLike, str, str]]:
    """The model's scores, and the baseline's when given, each with its legend label and colour."""
    curves = [(y_score, _MODEL_LABEL, _MODEL_COLOR)]
    if baseline_score is not None:
        curves.append((baseline_score, _BASELINE_LABEL, _BASELINE_COLOR))
    return curves


def _save_curves(figure: Figure, ax: Axes, path: str | Path, *, legend: Literal["lower right", "upper right"]) -> Path:
    """A curve plot's legend (at `legend`) and grid, then the PNG."""
    ax.legend(loc=legend)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def roc_curve_png(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, path: str | Path, *, baseline_score: npt.ArrayLike | None = None
) -> Path:
    """ROC curve of the model (and optionally a baseline on the same rows); AUCs in title and legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, (ax,) = _new_figure()
    for scores, name, color in _curves(y_score, baseline_score):
        fpr, tpr, _ = roc_curve(y_true, scores)  # drop_intermediate keeps this to a few hundred points
        ax.plot(fpr, tpr, color=color, label=f"{name} (AUC {roc_auc_score(y_true, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate (1 − specificity)")
    auc = float(roc_auc_score(y_true, y_score))
    ax.set(ylabel="True positive rate (sensitivity)", title=f"ROC curve — AUC {auc:.3f}")
    return _save_curves(figure, ax, path, legend="lower right")


def pr_curve_png(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, path: str | Path, *, baseline_score: npt.ArrayLike | None = None
) -> Path:
    """Precision-recall curve with average precision; the prevalence line is a no-skill model."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, (ax,) = _new_figure()
    for scores, name, color in _curves(y_score, baseline_score):
        precision, recall, _ = precision_recall_curve(y_true, scores)
        ap = average_precision_score(y_true, scores)
        # steps-post matches how average precision integrates the curve.
        ax.plot(recall, precision, color=color, drawstyle="steps-post", label=f"{name} (AP {ap:.3f})")
    prevalence = float(np.mean(np.asarray(y_true)))
    ax.axhline(prevalence, color="grey", linestyle="--", linewidth=1, label=f"prevalence {prevalence:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
    average_precision = float(average_precision_score(y_true, y_score))
    ax.set(title=f"Precision-recall curve — AP {average_precision:.3f}")
    return _save_curves(figure, ax, path, legend="upper right")


def calibration_png(y_true: npt.ArrayLike, y_score: npt.ArrayLike, path: str | Path, bins: int = 10) -> Path:
    """Reliability diagram over equal-frequency bins (as in the ECE), above a histogram of scores."""
    scores = np.asarray(y_score, dtype=np.float64)
    mean_predicted, observed, counts = calibration_bins(y_true, scores, bins)
    ece = expected_calibration_error(y_true, scores, bins)
    figure, (top, bottom) = _new_figure(2, height_ratios=[3.0, 1.0])
    # Zoom to where the scores are: readmission risk is mostly low, and on a [0, 1] axis
    # every bin would crowd into the bottom-left corner.
    upper = min(1.0, 1.1 * max(float(np.quantile(scores, 0.995)), mean_predicted.max(), observed.max()))
    upper = max(upper, 0.05)
    standard_error = np.sqrt(observed * (1.0 - observed) / counts)  # binomial, per bin
    top.plot([0, upper], [0, upper], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    top.errorbar(
        mean_predicted,
        observed,
        yerr=1.96 * standard_error,
        color=_MODEL_COLOR,
        marker="o",
        capsize=3,
        label=f"{mean_predicted.size} equal-frequency bins (95% CI)",
    )
    top.set(xlim=(0, upper), ylim=(0, upper), ylabel="Observed readmission rate")
    top.set(title=f"Calibration — ECE {ece:.3f}")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.hist(scores, bins=50, range=(0.0, upper), color=_MODEL_COLOR, alpha=0.7)
    bottom.set(xlabel="Predicted probability", ylabel="Rows")
    return _save(figure, path)
