"""Logging set-up for clinrisk's entry points (CLI, benchmarks)."""

from __future__ import annotations

import logging
import os


def quiet_libraries() -> None:
    """MLflow's INFO lines and artifact progress bars drown clinrisk's own output."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
