"""Evaluation plots: valid, non-trivial PNGs, no windows, a cheap import."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from clinrisk.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(0)
    y = rng.binomial(1, 0.11, 20_000).astype(np.int64)
    score = np.clip(rng.beta(1.2, 8.0, y.size) + 0.08 * y, 0.0, 1.0)
    baseline = np.clip(rng.beta(1.2, 8.0, y.size) + 0.04 * y, 0.0, 1.0)
    return y, score, baseline


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has right after the signature."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_MAGIC
    assert header[12:16] == b"IHDR"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


def _assert_valid_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000  # axes, curves and text, not a blank canvas
    assert _png_size(path) == (600, 500)


PlotWithBaseline = Callable[..., Path]


@pytest.mark.parametrize("plot", [plots.roc_curve_png, plots.pr_curve_png])
def test_curves_with_and_without_a_baseline(plot: PlotWithBaseline, tmp_path: Path) -> None:
    y, score, baseline = _data()
    alone = plot(y, score, tmp_path / "alone.png")
    both = plot(y, score, tmp_path / "both.png", baseline_score=baseline)
    assert alone == tmp_path / "alone.png"
    _assert_valid_png(alone)
    _assert_valid_png(both)
    assert alone.read_bytes() != both.read_bytes()


def test_calibration_png(tmp_path: Path) -> None:
    y, score, _ = _data()
    path = plots.calibration_png(y, score, str(tmp_path / "calibration.png"), bins=10)
    assert path == tmp_path / "calibration.png"
    _assert_valid_png(path)


def test_calibration_png_with_all_scores_tied(tmp_path: Path) -> None:
    # One bin, and an observed rate of 0 or 1 in it must not break the error bars.
    path = plots.calibration_png(np.array([0, 0, 0, 1]), np.full(4, 0.3), tmp_path / "tied.png")
    _assert_valid_png(path)


def test_plots_create_missing_folders(tmp_path: Path) -> None:
    y, score, _ = _data()
    path = plots.roc_curve_png(y, score, tmp_path / "run" / "plots" / "roc.png")
    _assert_valid_png(path)


def test_plots_leave_no_pyplot_figures_open(tmp_path: Path) -> None:
    y, score, _ = _data()
    plots.calibration_png(y, score, tmp_path / "c.png")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # another test may have imported pyplot; it must hold no figures of ours
        assert pyplot.get_fignums() == []


def test_importing_plots_does_not_import_matplotlib_or_sklearn() -> None:
    code = (
        "import sys, clinrisk.evaluation.plots, clinrisk.evaluation.gate; "
        "loaded = [m for m in ('matplotlib', 'sklearn') if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
