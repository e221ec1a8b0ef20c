"""A small synthetic stand-in for the UCI heart-disease site files: header-less, 14 fields, `?` missing.

Values are drawn inside the task's plausible ranges and codes, with a planted signal (disease more
likely with age, asymptomatic chest pain, exercise angina and ST depression), so tests can check
validation, the feature matrix and drafting without the real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    *("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg"),
    *("thalach", "exang", "oldpeak", "slope", "ca", "thal", "num"),
]


# One heart-disease record as the API takes it (typed values, the loader's row id).
HEART_RECORD = {"row_id": "h-1", "age": 63, "sex": 1, "cp": 4, "trestbps": 145, "chol": 233, "fbs": True, "restecg": 2,
         "thalach": 150, "exang": False, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": 6}  # fmt: skip


def heart_frame(rows: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(30, 78, rows)
    cp = rng.choice([1, 2, 3, 4], rows, p=[0.1, 0.2, 0.25, 0.45])
    exang = rng.integers(0, 2, rows)
    oldpeak = np.round(rng.uniform(0, 4, rows), 1)
    risk = 0.05 * (age - 55) + 1.2 * (cp == 4) + 1.0 * exang + 0.6 * oldpeak - 1.5
    disease = rng.random(rows) < 1 / (1 + np.exp(-risk))
    num = np.where(disease, rng.integers(1, 5, rows), 0)
    return pd.DataFrame(
        {
            "age": age.astype(float),
            "sex": rng.integers(0, 2, rows).astype(float),
            "cp": cp.astype(float),
            "trestbps": rng.integers(95, 190, rows).astype(float),
            "chol": rng.integers(130, 420, rows).astype(float),
            "fbs": rng.integers(0, 2, rows).astype(float),
            "restecg": rng.choice([0, 1, 2], rows).astype(float),
            "thalach": rng.integers(80, 200, rows).astype(float),
            "exang": exang.astype(float),
            "oldpeak": oldpeak,
            "slope": rng.choice([1, 2, 3], rows).astype(float),
            "ca": rng.integers(0, 4, rows).astype(float),
            "thal": rng.choice([3, 6, 7], rows).astype(float),
            "num": num.astype(float),
        },
        columns=COLUMNS,
    ).astype(object)


def write_site_file(path: Path, frame: pd.DataFrame) -> Path:
    """Write as the UCI files are: no header, `?` for a missing cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.fillna("?").to_csv(path, header=False, index=False)
    return path
