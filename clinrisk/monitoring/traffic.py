"""Synthetic traffic for the local loop: a (shifted) synthetic cohort sent to the running local API
as `POST /v1/predict` requests, and the outcomes file of the same encounters for `outcomes ingest`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinrisk.monitoring.reference import plain_value
from clinrisk.tasks.readmission.features import prior_encounter_counts
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, TARGET
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort


def shifted_cohort(shift: str, rows: int, seed: int) -> pd.DataFrame:
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; choose from {', '.join(SHIFTS)}")
    return SHIFTS[shift](generate_cohort(rows, seed=seed), np.random.default_rng(seed))


def request_bodies(frame: pd.DataFrame, per_request: int) -> list[bytes]:
    """The encounters as the API takes them (None for missing, with `prior_encounters`)."""
    priors = prior_encounter_counts(frame).astype(int).tolist()
    encounters: list[dict[str, Any]] = []
    for row, prior in zip(frame.drop(columns=[TARGET]).to_dict("records"), priors, strict=True):
        encounters.append({str(k): plain_value(v) for k, v in row.items()} | {"prior_encounters": prior})
    return [
        json.dumps({"encounters": encounters[i : i + per_request]}).encode()
        for i in range(0, len(encounters), per_request)
    ]


def send(url: str, token: str, bodies: list[bytes], *, timeout: float = 60.0) -> Counter[int]:
    """POST each body; counts of HTTP statuses."""
    statuses: Counter[int] = Counter()
    for body in bodies:
        request = urllib.request.Request(
            url.rstrip("/") + "/v1/predict",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                statuses[response.status] += 1
        except urllib.error.HTTPError as error:
            statuses[error.code] += 1
    return statuses


def write_outcomes(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[[ENCOUNTER_ID, TARGET]].to_csv(path, index=False)
